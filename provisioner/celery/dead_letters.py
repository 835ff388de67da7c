"""Failed task messages reach their queue's dead-letter exchange once, with the exception in their headers.

AMQP cannot add headers to a rejected message, so a copy with the exception
goes to the queue's dead-letter exchange (publisher confirms on), then the
original is acked. Requeues are bounded: a message is requeued (a lost worker
with ``task_reject_on_worker_lost``, ``Reject(requeue=True)``) only when it was
not delivered before; a redelivered one is dead-lettered instead, and a hard
time limit is always dead-lettered (Celery would requeue it forever).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import Terminated, WorkerLostError
from celery import Celery
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded
from celery.worker import state
from celery.worker.request import Request
from kombu.message import Message

from provisioner.celery.queues import came_delayed, work_queue

log = logging.getLogger("provisioner.celery")

HEADER_LIMIT = 4000  # characters of traceback kept in a dead-lettered message's headers
# The main process's pooled connection can be shut down under it by a replaced pool process
# (kombu's after-fork cleanup closes the inherited socket): a publish reconnects and tries again.
PUBLISH_RETRY = {"max_retries": 5, "interval_start": 0, "interval_step": 0.5, "interval_max": 2}
PROPERTIES_KEPT = ("correlation_id", "reply_to", "priority", "message_id", "timestamp", "type", "app_id")


@dataclass(frozen=True)
class Failure:
    """Why a task message ends: the real exception (never billiard's wrapper) and its traceback text."""

    exception: BaseException
    traceback: str = ""

    def describe(self) -> str:
        reason = getattr(self.exception, "reason", None)  # Reject and Ignore carry theirs apart from args
        text = str(reason if isinstance(self.exception, (Reject, Ignore)) and reason is not None else self.exception)
        name = type(self.exception).__name__
        if text.startswith(f"{name}("):  # billiard's exceptions print as their repr
            text = ", ".join(str(arg) for arg in self.exception.args)
        return f"{name}: {text}"[:HEADER_LIMIT] if text else name


def unwrap(exception: BaseException) -> BaseException:
    """The task's exception: billiard wraps what crosses from a pool process in ExceptionWithTraceback."""
    return exception.exc if isinstance(exception, ExceptionWithTraceback) else exception


class DeadLetteringRequest(Request):  # type: ignore[misc]
    """A request whose final failure reaches the dead-letter queue with the exception in its headers."""

    _failure: Failure | None = None
    _dead_lettered = False

    def __init__(self, message: Message, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        queue = work_queue(self._app, message.delivery_info or {})
        self.work_queue = queue.name if queue is not None else None
        if queue is not None and came_delayed(message.delivery_info or {}) and queue.exchange is not None:
            # What Celery's retry and our runtime read in the pool process: the queue's own route,
            # not the celery_delayed_* exchange and its rewritten key.
            self._delivery_info.update(exchange=queue.exchange.name, routing_key=queue.routing_key)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft and not state.should_terminate:
            self._failure = Failure(TimeLimitExceeded(f"hard time limit ({timeout}s) exceeded"))
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exception = unwrap(exc_info.exception)
        if isinstance(exception, (SystemExit, KeyboardInterrupt)) and not self._stopped_by_celery():
            exception = unwrap(self._worker_lost_info(exception).exception)
        if not isinstance(self._failure, Failure) or not isinstance(self._failure.exception, TimeLimitExceeded):
            self._failure = Failure(exception, str(exc_info.traceback or ""))
        result = super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        if not self.task.acks_late and self._final() and not self._retried_by_celery():
            self._dead_letter_copy()  # acked when it started: a copy is all that can still land
        return result

    def reject(self, requeue: bool = False) -> None:
        if self.acknowledged:
            return
        if self._failure is not None and state.should_terminate:
            requeue = True  # a cold shutdown stopped it: the next worker runs it, nothing failed
        elif requeue and self._failure is not None and not self._may_requeue():
            requeue = False
        if not requeue and self._failure is not None and self._dead_letter_copy():
            self.acknowledge()
            return
        if not requeue and self._failure is not None and self._dead_letter_target() is not None:
            requeue = True  # the publish failed (logged): the broker's dead-lettering would drop it too
        super().reject(requeue=requeue)

    def _may_requeue(self) -> bool:
        """A requeue is granted once: never for a hard time limit, never for a message delivered before."""
        if self._failure is not None and isinstance(self._failure.exception, TimeLimitExceeded):
            return False
        return not (self._message.delivery_info or {}).get("redelivered")

    def _retried_by_celery(self) -> bool:
        """Whether Celery published a retry of a lost worker's task (``retry_on_worker_lost``, retries left)."""
        if self._failure is None or not isinstance(self._failure.exception, WorkerLostError):
            return False
        max_retries = self.task.max_retries
        return bool(self.task.retry_on_worker_lost) and (max_retries is None or self._context.retries < max_retries)

    def _stopped_by_celery(self) -> bool:
        return bool(self._already_cancelled or self._already_revoked)

    def _final(self) -> bool:
        """Whether the failure ends the task (not a retry, an ignore, a revoke or a shutdown's cancel)."""
        exception = self._failure.exception if self._failure is not None else None
        if exception is None or isinstance(exception, (Ignore, Retry, Terminated)) or state.should_terminate:
            return False
        return not (isinstance(exception, (SystemExit, KeyboardInterrupt)) and self._stopped_by_celery())

    def _dead_letter_target(self) -> tuple[str, str] | None:
        target = (self._app.conf.get("provisioner_dead_letters") or {}).get(self.work_queue)
        return (str(target[0]), str(target[1])) if target else None

    def _dead_letter_copy(self) -> bool:
        """Publish the message with its failure to its queue's DLX; False when it has none or the publish failed."""
        target = self._dead_letter_target()
        if self._dead_lettered or target is None or self._failure is None:
            return self._dead_lettered
        headers = {
            "x-exception": self._failure.describe(),
            "x-exception-traceback": self._failure.traceback[-HEADER_LIMIT:],
            "x-failed-queue": self.work_queue,
            "x-failed-task": self.name,
        }
        try:
            publish(self._app, self._message, target, headers)
        except Exception as error:
            log.error(
                "could not publish %s[%s] to its dead-letter exchange (%s: %s); the message goes back to "
                "queue %r and is delivered again: nothing is lost, but the dead-letter exchange must exist "
                "(provision plan shows what the broker lacks)",
                *(self.name, self.id, type(error).__name__, error, self.work_queue),
            )
            return False
        self._dead_lettered = True
        log.info(
            "%s[%s] dead-lettered to exchange %r, key %r (%s)", self.name, self.id, *target, headers["x-exception"]
        )
        return True


def publish(app: Celery, message: Message, target: tuple[str, str], headers: dict[str, Any]) -> None:
    """Publish a copy of ``message`` with ``headers`` added, confirmed, reconnecting if the connection broke."""
    properties = message.properties or {}
    merged = {**(message.headers or {}), **headers, "x-failed-at": _now()}
    with app.producer_or_acquire() as producer:
        producer.publish(
            message.body,
            exchange=target[0],
            routing_key=target[1],
            headers=merged,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=2,
            retry=True,
            retry_policy=PUBLISH_RETRY,
            **{k: properties[k] for k in PROPERTIES_KEPT if properties.get(k) is not None},
        )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
