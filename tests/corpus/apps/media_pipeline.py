"""A media pipeline: CELERY_-prefixed settings read with a namespace, task_routes as a list of
(pattern, route) pairs inside a tuple (regex and globs), a fanout exchange, queues named on tasks."""

import os
import re

from celery import Celery, Task
from kombu import Exchange, Queue

app = Celery("media", broker=os.environ.get("CELERY_BROKER_URL", "amqp://localhost//"))


class Config:
    CELERY_TASK_QUEUES = [
        Queue("thumbnails", Exchange("media"), routing_key="thumbnails", queue_arguments={"x-message-ttl": 3600000}),
        Queue("transcode", Exchange("media"), routing_key="transcode", queue_arguments={"x-max-priority": 3}),
        Queue("broadcast", Exchange("media.broadcast", type="fanout")),
        Queue("slow", Exchange("media"), routing_key="slow"),
    ]
    CELERY_TASK_ROUTES = (
        [
            ("media.images.*", {"queue": "thumbnails"}),
            (re.compile(r"media\.(video|audio)\.encode_.*"), {"queue": "transcode"}),
            ("media.notify.*", {"queue": "broadcast"}),
        ],
    )


if os.environ.get("PROVISION_RENDERED"):
    import provisioner.celery

    app.config_from_object(os.environ["PROVISION_RENDERED"])
    provisioner.celery.install(app)
else:
    app.config_from_object(Config, namespace="CELERY")


def record(name):
    with open(os.environ["OBSERVED"], "a") as file:
        file.write(name + "\n")


@app.task(name="media.images.resize")
def resize():
    record("media.images.resize")


@app.task(name="media.video.encode_h264")
def encode_h264():
    record("media.video.encode_h264")


@app.task(name="media.audio.encode_opus")
def encode_opus():
    record("media.audio.encode_opus")


@app.task(name="media.notify.all")
def notify_all():
    record("media.notify.all")


@app.task(name="media.archive.cold_storage", queue="slow")
def cold_storage():
    record("media.archive.cold_storage")


class Fingerprint(Task):
    name = "media.audio.fingerprint"
    queue = "slow"

    def run(self):
        record(self.name)


app.register_task(Fingerprint())
