"""The worker side: consumers for foreign messages, and failed tasks that reach their dead-letter queue.

``install(app)`` reads what ``provision render`` wrote into the config
(``provisioner_foreign_consumers``, ``provisioner_dead_letters``,
``provisioner_task_retries``, ``provisioner_retry_queues``) and needs nothing else.
"""

from __future__ import annotations

import datetime
import fnmatch
import functools
import json
import logging
import math
import random
from typing import Any

from celery import Celery, bootsteps
from celery.exceptions import Retry as CeleryRetry
from celery.exceptions import TaskPredicate, TimeLimitExceeded
from celery.worker.request import Request
from kombu import Consumer
from kombu import Exchange as KombuExchange
from kombu import Queue as KombuQueue
from kombu.exceptions import OperationalError
from kombu.message import Message

from provisioner.topology.model import Retry

log = logging.getLogger("provisioner.celery")

FOREIGN_PREFETCH = 10
HEADER_LIMIT = 4000  # characters of traceback kept in a dead-lettered message's headers


def install(app: Celery) -> None:
    """Register the foreign consumers and dead-lettering of failed tasks; call once in the app module."""
    for queue, task_name in sorted((app.conf.get("provisioner_foreign_consumers") or {}).items()):
        app.steps["consumer"].add(_foreign_consumer_step(queue, task_name))
    app.Task.Request = DeadLetteringRequest
    if app.finalized:
        _configure_tasks(app)
    else:
        app.on_after_finalize.connect(_configure_tasks, weak=False)


def _configure_tasks(sender: Celery, **_: Any) -> None:
    """Every task dead-letters its failures; tasks the topology gives retry settings retry so."""
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
    options: dict[str, Any] = {"countdown": math.ceil(wait)}
    message = None
    if retry.via == "broker":
        name = _retry_queue(task, round(wait * 1000))
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


def _retry_queue(task: Any, wait_ms: int) -> str | None:
    """The retry queue of this wait for the task's work queue; without one (a queue not rendered) a countdown."""
    source = _source_queue(task.app, task.request.delivery_info or {})
    name: str | None = ((task.app.conf.get("provisioner_retry_queues") or {}).get(source) or {}).get(wait_ms)
    if name is None:
        log.warning("no retry queue of %r waits %d ms; %s waits by countdown instead", source, wait_ms, task.name)
    return name


class DeadLetteringRequest(Request):  # type: ignore[misc]
    """A request whose final failure reaches the dead-letter queue with the exception in its headers.

    AMQP cannot add headers to a rejected message, so a copy with the
    exception goes to the queue's dead-letter exchange (publisher confirms on),
    then the original is acked. A queue without a known dead-letter exchange is
    rejected without requeue (the broker dead-letters it as it is). If the
    publish fails (the exchange is gone), the original goes back to its queue:
    the broker's dead-lettering would go to the same missing exchange and drop it.
    """

    _failure: Any = None

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        self._failure = exc_info
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def reject(self, requeue: bool = False) -> None:
        if self._failure is not None and isinstance(self._failure.exception, TimeLimitExceeded):
            requeue = False  # Celery would requeue a timed-out task forever; dead-letter it instead
        if not requeue and not self.acknowledged and self._failure is not None:
            try:
                if _publish_dead_letter(self):
                    self.acknowledge()
                    return
            except Exception as error:
                # The broker's own dead-lettering goes to the same exchange, so it would drop the message too.
                queue = _source_queue(self.task.app, self.delivery_info or {})
                log.error(
                    "could not publish %s[%s] to its dead-letter exchange (%s: %s); the message goes back to "
                    "queue %r and is delivered again: nothing is lost, but the dead-letter exchange must exist "
                    "(provision plan shows what the broker lacks)",
                    self.name,
                    self.id,
                    type(error).__name__,
                    error,
                    queue,
                )
                requeue = True
        super().reject(requeue=requeue)


def _publish_dead_letter(request: DeadLetteringRequest) -> bool:
    """Publish the failed message with its exception to its queue's DLX; False when it has none."""
    app = request.task.app
    queue = _source_queue(app, request.delivery_info or {})
    target = (app.conf.get("provisioner_dead_letters") or {}).get(queue)
    if target is None:
        return False
    message: Message = request.message
    exception = request._failure.exception
    headers = dict(message.headers or {})
    headers.update(
        {
            "x-exception": f"{type(exception).__name__}: {exception}"[:HEADER_LIMIT],
            "x-exception-traceback": str(request._failure.traceback or "")[-HEADER_LIMIT:],
            "x-failed-queue": queue,
            "x-failed-task": request.name,
            "x-failed-at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    properties = {k: v for k, v in (message.properties or {}).items() if k not in ("application_headers",)}
    properties.pop("delivery_info", None)
    with app.producer_or_acquire() as producer:
        producer.publish(
            message.body,
            exchange=target[0],
            routing_key=target[1],
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=2,
            retry=False,
            **{k: v for k, v in properties.items() if k in ("correlation_id", "reply_to", "priority")},
        )
    log.info("%s[%s] dead-lettered to exchange %r, key %r", request.name, request.id, target[0], target[1])
    return True


def _source_queue(app: Celery, delivery_info: dict[str, Any]) -> str | None:
    """The queue a task message came from, by the exchange and routing key it was published with."""
    exchange, routing_key = delivery_info.get("exchange") or "", delivery_info.get("routing_key") or ""
    for queue in app.conf.task_queues or ():
        if (exchange == "" and routing_key == queue.name) or (
            queue.exchange is not None and queue.exchange.name == exchange and queue.routing_key == routing_key
        ):
            return str(queue.name)
    return None


def _foreign_consumer_step(queue: str, task_name: str) -> type[bootsteps.ConsumerStep]:
    """A consumer bootstep that hands each JSON message of ``queue`` to ``task_name``."""

    class ForeignConsumer(bootsteps.ConsumerStep):  # type: ignore[misc]
        name = f"provisioner.foreign:{queue}"

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            self.app = parent.app
            super().__init__(parent, **kwargs)

        def get_consumers(self, channel: Any) -> list[Consumer]:
            log.info("consuming foreign messages of %r for task %r", queue, task_name)
            return [
                Consumer(
                    channel,
                    queues=[KombuQueue(queue, no_declare=True)],
                    on_message=lambda message: hand_over(self.app, queue, task_name, message),
                    prefetch_count=FOREIGN_PREFETCH,
                )
            ]

    ForeignConsumer.__name__ = ForeignConsumer.__qualname__ = f"ForeignConsumer[{queue}]"
    return ForeignConsumer


def _origin_headers(queue: str, message: Message) -> dict[str, str]:
    """Where a foreign message came from, kept in its task's headers (and so in a dead-lettered copy)."""
    info = message.delivery_info or {}
    return {
        "x-foreign-queue": queue,
        "x-foreign-exchange": str(info.get("exchange") or ""),
        "x-foreign-routing-key": str(info.get("routing_key") or ""),
    }


def hand_over(app: Celery, queue: str, task_name: str, message: Message) -> None:
    """Decode a foreign JSON message and publish it as a task; ack only once that publish is confirmed.

    The task's only argument is the decoded JSON value, whatever its type; it
    runs on the queue ``task_routes`` gives it (the topology's ``run_on``).

    Undecodable bodies are rejected without requeue (they dead-letter). A
    broker that cannot take the task now gets the message back (requeue);
    any other failure dead-letters it. Nothing here may raise: an exception
    would stop the worker's consumer.
    """
    try:
        body = message.body
        payload = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (ValueError, UnicodeDecodeError) as error:
        log.warning("foreign message on %r is not JSON (%s); dead-lettering it", queue, error)
        message.reject(requeue=False)
        return
    try:
        app.send_task(task_name, args=[payload], headers=_origin_headers(queue, message))
    except OperationalError:
        log.warning("could not hand a message of %r to %r now; it goes back to the queue", queue, task_name)
        message.requeue()
        return
    except Exception:
        log.exception("could not hand a message of %r to %r; dead-lettering it", queue, task_name)
        message.reject(requeue=False)
        return
    message.ack()
