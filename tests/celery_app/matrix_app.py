"""The tasks of the failure matrix: each call says how it ends, and every attempt is written down."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from typing import Any

from celery import Celery
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded

import provisioner.celery

app = Celery("matrix")
app.config_from_object("celeryconfig")  # rendered by `provision render`
provisioner.celery.install(app)

OBSERVED = os.environ.get("E2E_OBSERVED", "observed.jsonl")
QUEUES = ("celery", "ctopic", "qdirect", "qtopic")


def observe(**record: object) -> None:
    with open(OBSERVED, "a", encoding="utf-8") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


def act(task: Any, do: str, key: str) -> None:
    """Run one attempt as ``do`` says: return, raise, time out, die, reject, ignore, retry or wait."""
    observe(key=key, do=do, attempt=task.request.retries, task=task.name, pid=os.getpid())
    if do == "fail":
        raise RuntimeError(f"failed {key}")
    if do in ("soft", "hard"):
        try:
            time.sleep(60)
        except SoftTimeLimitExceeded:
            if do == "soft":
                raise
            time.sleep(60)  # past the soft limit on purpose: the hard limit kills the process
    if do == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if do == "reject":
        raise Reject(f"bad input {key}", requeue=False)
    if do == "reject_requeue":
        raise Reject(f"not now {key}", requeue=True)
    if do == "ignore":
        raise Ignore()
    if do == "retry":
        raise task.retry(countdown=1, max_retries=1)
    while do == "hold" and os.path.exists(f"hold-{key}"):  # the test decides when this attempt ends
        time.sleep(0.05)


@app.task(name="m.act", bind=True)
def act_late(self: Any, do: str, key: str) -> None:
    act(self, do, key)


@app.task(name="m.early", bind=True, acks_late=False)
def act_early(self: Any, do: str, key: str) -> None:
    act(self, do, key)


@app.task(name="m.requeue_lost", bind=True, reject_on_worker_lost=True)
def act_requeue_lost(self: Any, do: str, key: str) -> None:
    act(self, do, key)


@app.task(
    name="m.retry_lost_early",
    bind=True,
    acks_late=False,
    retry_on_worker_lost=True,
    max_retries=1,
    default_retry_delay=1,
)
def act_retry_lost_early(self: Any, do: str, key: str) -> None:
    act(self, do, key)


@app.task(
    name="m.autoretry",
    bind=True,
    autoretry_for=(RuntimeError,),
    max_retries=1,
    default_retry_delay=1,
    retry_jitter=False,
)
def act_autoretry(self: Any, do: str, key: str) -> None:
    act(self, do, key)


def _retrying(prefix: str, queue: str) -> None:
    @app.task(name=f"{prefix}.{queue}", bind=True)
    def retrying(self: Any, do: str, key: str) -> None:
        act(self, do, key)


for _queue in QUEUES:
    _retrying("m.wretry", _queue)  # the topology gives these `retry: {via: worker}`
    _retrying("m.bretry", _queue)  # and these `retry: {via: broker}`


@app.task(name="m.foreign", bind=True)
def foreign(self: Any, body: Any) -> None:
    """A foreign message's task: a body ``{"do": ..., "key": ...}`` acts; any other body is counted."""
    if isinstance(body, dict) and set(body) == {"do", "key"}:
        act(self, str(body["do"]), str(body["key"]))
        return
    digest = hashlib.sha256(repr(body).encode("utf-8", "surrogatepass")).hexdigest()
    observe(key="fuzz", digest=digest, task=self.name, attempt=self.request.retries)


@app.task(name="m.foreign_limited", bind=True, soft_time_limit=1, time_limit=2)
def foreign_limited(self: Any, body: dict[str, str]) -> None:
    act(self, body["do"], body["key"])
