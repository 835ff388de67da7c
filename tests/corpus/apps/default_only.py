"""The smallest app: no queues, no routes; every task goes to the queue Celery declares by itself."""

import os

from celery import Celery

app = Celery("plain", broker=os.environ.get("CELERY_BROKER_URL", "amqp://localhost//"))

if os.environ.get("PROVISION_RENDERED"):
    import provisioner.celery

    app.config_from_object(os.environ["PROVISION_RENDERED"])
    provisioner.celery.install(app)


def record(name):
    with open(os.environ["OBSERVED"], "a") as file:
        file.write(name + "\n")


@app.task(name="plain.add")
def add():
    record("plain.add")


@app.task(name="plain.mul")
def mul():
    record("plain.mul")
