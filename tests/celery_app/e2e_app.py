"""A Celery app as a user writes it, for the end-to-end tests: three lines of provisioner."""

from __future__ import annotations

import json
import os
import time

from celery import Celery

import provisioner.celery

app = Celery("e2e")
app.config_from_object("celeryconfig")  # rendered by `provision render`
provisioner.celery.install(app)

OBSERVED = os.environ.get("E2E_OBSERVED", "observed.jsonl")


def observe(**record: object) -> None:
    with open(OBSERVED, "a", encoding="utf-8") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


@app.task(name="catalog.tasks.process_catalog_event", bind=True)
def process_catalog_event(self, body: dict) -> None:
    observe(task="process_catalog_event", body=body, attempt=self.request.retries)
    if body.get("fail"):
        raise ValueError(f"cannot process {body['id']}")


@app.task(name="e2e.always_fails", bind=True)
def always_fails(self) -> None:
    observe(task="always_fails", attempt=self.request.retries, at=time.time())
    while os.path.exists("hold.flag"):  # a test holds the attempt until it has told the worker to stop
        time.sleep(0.05)
    raise RuntimeError("always fails")


@app.task(name="e2e.works")
def works(value: int) -> None:
    observe(task="works", value=value)


@app.task(name="e2e.stamp")
def stamp(value: int) -> None:
    observe(task="stamp", value=value, at=time.time())


@app.task(name="e2e.notify")
def notify(value: str) -> None:
    observe(task="notify", value=value)


@app.task(name="e2e.flaky")
def flaky(value: int) -> None:
    """Fails while the file `fail.flag` exists in the worker's directory (a bug, then its fix)."""
    if os.path.exists("fail.flag"):
        raise RuntimeError(f"flag set, cannot handle {value}")
    observe(task="flaky", value=value)
