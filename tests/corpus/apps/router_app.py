"""Routing decided by code: a router function, a router named by a string, a legacy router class,
a headers exchange that matches Celery's `task` header, and a queue no task is routed to."""

import os

from celery import Celery
from kombu import Exchange, Queue

app = Celery("routed", broker=os.environ.get("CELERY_BROKER_URL", "amqp://localhost//"))


def by_prefix(name, args, kwargs, options, task=None, **kw):
    if name.startswith("routed.billing."):
        return {"queue": "billing"}
    return None


def by_string(name, args, kwargs, options, task=None, **kw):
    return {"queue": "reports"} if name == "routed.reports.weekly" else None


class LegacyRouter:
    def route_for_task(self, task, args=None, kwargs=None):
        return {"queue": "legacy"} if task == "routed.legacy.sync" else None


SETTINGS = {
    "task_queues": [
        Queue("billing", Exchange("routed"), routing_key="billing"),
        Queue("reports", Exchange("routed"), routing_key="reports"),
        Queue("legacy", Exchange("routed"), routing_key="legacy"),
        Queue(
            "daily",
            Exchange("routed.match", type="headers"),
            binding_arguments={"x-match": "any", "task": "routed.reports.daily"},
        ),
        Queue("spare", Exchange("routed"), routing_key="spare"),
        Queue("celery", Exchange("celery"), routing_key="celery"),
    ],
    "task_routes": (
        by_prefix,
        "router_app.by_string",
        LegacyRouter(),
        {"routed.reports.daily": {"queue": "daily"}},
    ),
}

if os.environ.get("PROVISION_RENDERED"):
    import provisioner.celery

    app.config_from_object(os.environ["PROVISION_RENDERED"])
    provisioner.celery.install(app)
else:
    app.conf.update(SETTINGS)


def record(name):
    with open(os.environ["OBSERVED"], "a") as file:
        file.write(name + "\n")


@app.task(name="routed.billing.invoice")
def invoice():
    record("routed.billing.invoice")


@app.task(name="routed.reports.weekly")
def weekly():
    record("routed.reports.weekly")


@app.task(name="routed.reports.daily")
def daily():
    record("routed.reports.daily")


@app.task(name="routed.legacy.sync")
def sync():
    record("routed.legacy.sync")


@app.task(name="routed.misc.ping")
def ping():
    record("routed.misc.ping")
