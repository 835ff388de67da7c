"""The worker side: consumers for foreign messages, and failed tasks that reach their dead-letter queue.

``install(app)`` reads what ``provision render`` wrote into the config
(``provisioner_foreign_consumers``, ``provisioner_dead_letters``,
``provisioner_task_retries``, ``provisioner_retry_queues``) and needs nothing else.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import math
import random
from typing import Any

from celery import Celery
from celery.exceptions import Retry as CeleryRetry
from celery.exceptions import TaskPredicate
from kombu import Exchange as KombuExchange
from kombu import Queue as KombuQueue

from provisioner.celery.dead_letters import DeadLetteringRequest
from provisioner.celery.foreign import foreign_consumer_step
from provisioner.celery.queues import TaskConsumerTags, work_queue
from provisioner.topology.model import Retry

log = logging.getLogger("provisioner.celery")

# The routing settings the rendered config holds: set by the app itself (app.conf.update, app.conf.X = ...),
# Celery keeps the app's value over config_from_object's, whatever the order of the two.
ROUTING_SETTINGS = (
    "task_queues",
    "task_routes",
    "task_create_missing_queues",
    "task_default_queue",
    "task_default_exchange",
    "task_default_exchange_type",
    "task_default_routing_key",
)


def install(app: Celery) -> None:
    """Register the foreign consumers and dead-lettering of failed tasks; call once in the app module."""
    for queue, task_name in sorted((app.conf.get("provisioner_foreign_consumers") or {}).items()):
        app.steps["consumer"].add(foreign_consumer_step(queue, task_name))
    app.steps["consumer"].add(TaskConsumerTags)
    app.Task.Request = DeadLetteringRequest
    if app.finalized:
        _configure_tasks(app)
    else:
        app.on_after_finalize.connect(_configure_tasks, weak=False)


def shadowed_settings(app: Celery) -> list[str]:
    """The routing settings the app sets itself over a loaded rendered config (empty without one)."""
    if "provisioner_dead_letters" not in app.conf:  # no rendered config: the app's settings are all there is
        return []
    return [name for name in ROUTING_SETTINGS if name in app.conf.changes]


def _configure_tasks(sender: Celery, **_: Any) -> None:
    """Every task dead-letters its failures; tasks the topology gives retry settings retry so."""
    if shadowed := shadowed_settings(sender):
        log.warning(
            "the app sets %s itself (app.conf.update or app.conf.<name> = ...), which Celery keeps over the "
            "rendered config: its tasks may go to queues the broker does not have (QueueNotFound); remove them "
            "from the app, the rendered config holds them",
            ", ".join(shadowed),
        )
    retries: dict[str, dict[str, Any]] = sender.conf.get("provisioner_task_retries") or {}
    for name, task in sender.tasks.items():
        task.Request = DeadLetteringRequest
        settings = next((s for pattern, s in retries.items() if fnmatch.fnmatchcase(name, pattern)), None)
        if settings is not None and not name.startswith("celery."):
            _retry(task, settings)


def _retry(task: Any, settings: dict[str, Any]) -> None:
    """Retry every failure of ``task`` as the topology says: ``max_retries`` times, each after its wait.

    The wait is ``delay`` (doubled with ``backoff``, at most ``delay_max``),
    whole seconds rounded up (Celery's native delayed delivery counts whole
    seconds); with ``jitter`` a random part of it. ``via: broker`` waits in
    the retry queue of that wait instead of a worker's countdown. Past
    ``max_retries`` the failure propagates and is dead-lettered.
    """
    if hasattr(task, "_orig_run"):
        task.run = task._orig_run
        del task._orig_run
    retry = Retry(**settings)
    task.max_retries = retry.max_retries
    run = task._orig_run = task.run

    @functools.wraps(run)
    def run_with_retries(*args: Any, **kwargs: Any) -> Any:
        try:
            return run(*args, **kwargs)
        except TaskPredicate:  # Retry, Ignore, Reject: the task decided itself
            raise
        except Exception as exc:
            if task.request.retries >= retry.max_retries:
                log.info("%s[%s] failed after %d retries", task.name, task.request.id, task.request.retries)
                raise
            raise _retry_signal(task, retry, exc) from None

    task.run = run_with_retries


def _retry_signal(task: Any, retry: Retry, exc: Exception) -> CeleryRetry:
    """Publish the retry of this attempt and return Celery's Retry, its message saying how long it waits where."""
    wait = retry.wait_ms(task.request.retries) / 1000
    if retry.jitter:
        wait = random.uniform(0, wait)
    source = work_queue(task.app, task.request.delivery_info or {})
    # The work queue itself, not the exchange and key the attempt arrived with (a delayed one's are rewritten).
    options: dict[str, Any] = {"countdown": math.ceil(wait), **({"queue": source} if source is not None else {})}
    message = None
    if retry.via == "broker":
        name = _retry_queue(task, source.name if source is not None else None, round(wait * 1000))
        if name is not None:
            # countdown=0: no ETA, so the worker runs the message as soon as the broker returns it.
            options = {"countdown": 0, "queue": KombuQueue(name, KombuExchange(""), routing_key=name, no_declare=True)}
            message = f"Retry in {wait:g}s, waiting in {name}: {exc!r}"
    try:
        task.retry(exc=exc, max_retries=retry.max_retries, **options)
    except CeleryRetry as signal:
        if message is not None:
            signal.message = message
        return signal
    raise AssertionError("Task.retry returned instead of raising")  # pragma: no cover - throw=True raises


def _retry_queue(task: Any, source: str | None, wait_ms: int) -> str | None:
    """The retry queue of this wait for the task's work queue; without one (a queue not rendered) a countdown."""
    name: str | None = ((task.app.conf.get("provisioner_retry_queues") or {}).get(source) or {}).get(wait_ms)
    if name is None:
        log.warning("no retry queue of %r waits %d ms; %s waits by countdown instead", source, wait_ms, task.name)
    return name
