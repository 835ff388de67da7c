"""A shop's Celery app as such projects write it: a settings class, routes by name and by glob,
a topic exchange, a priority queue and a queue that dead-letters to another."""

import os

from celery import Celery
from kombu import Exchange, Queue

app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "amqp://localhost//"))

orders = Exchange("orders", type="topic")
dead = Exchange("shop.dead", type="direct")


class CelerySettings:
    task_default_queue = "shop.default"
    task_default_exchange = "shop"
    task_default_routing_key = "shop.default"
    task_queues = (
        Queue("shop.default", Exchange("shop"), routing_key="shop.default"),
        Queue("orders.created", orders, routing_key="order.created.#"),
        Queue(
            "payments",
            orders,
            routing_key="payment.#",
            queue_arguments={
                "x-max-priority": 10,
                "x-dead-letter-exchange": "shop.dead",
                "x-dead-letter-routing-key": "payments.dead",
            },
        ),
        Queue("payments.dead", dead, routing_key="payments.dead"),
    )
    task_routes = {
        "shop.orders.place_order": {"queue": "orders.created", "routing_key": "order.created.web"},
        "shop.payments.*": {"queue": "payments"},
    }


if os.environ.get("PROVISION_RENDERED"):
    import provisioner.celery

    app.config_from_object(os.environ["PROVISION_RENDERED"])
    provisioner.celery.install(app)
else:
    app.config_from_object(CelerySettings)


def record(name):
    with open(os.environ["OBSERVED"], "a") as file:
        file.write(name + "\n")


@app.task(name="shop.orders.place_order")
def place_order():
    record("shop.orders.place_order")


@app.task(name="shop.payments.charge")
def charge():
    record("shop.payments.charge")


@app.task(name="shop.payments.refund")
def refund():
    record("shop.payments.refund")


@app.task(name="shop.emails.send_receipt")
def send_receipt():
    record("shop.emails.send_receipt")
