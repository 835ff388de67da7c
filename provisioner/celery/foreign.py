"""Consumers for foreign messages: each JSON body becomes a task; any other body is dead-lettered with its reason.

Nothing here may raise into kombu: an exception would stop the worker's
consumer, and an unacked message would come back to stop the next one. So every
body is settled (handed over and acked, dead-lettered and acked, or rejected),
whatever its bytes, size, depth, content type or headers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery, bootsteps
from kombu import Consumer
from kombu import Queue as KombuQueue
from kombu.exceptions import OperationalError
from kombu.message import Message

from provisioner.celery.dead_letters import publish

log = logging.getLogger("provisioner.celery")

FOREIGN_PREFETCH = 10
# Deeper JSON is refused: Celery decodes the task message again in the worker and in the pool
# process, and Python's decoder raises RecursionError (or stops the worker) near 1,000 levels.
MAX_DEPTH = 200


class UndecodableBody(ValueError):
    """A foreign body that is not a JSON document the task can take (the dead letter says why)."""


def foreign_consumer_step(queue: str, task_name: str) -> type[bootsteps.ConsumerStep]:
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
                    on_decode_error=lambda message, error: refuse(self.app, queue, message, _undecodable(error)),
                    prefetch_count=FOREIGN_PREFETCH,
                )
            ]

    ForeignConsumer.__name__ = ForeignConsumer.__qualname__ = f"ForeignConsumer[{queue}]"
    return ForeignConsumer


def origin_headers(queue: str, message: Message) -> dict[str, str]:
    """Where a foreign message came from, kept in its task's headers (and so in a dead-lettered copy)."""
    info = message.delivery_info or {}
    return {
        "x-foreign-queue": queue,
        "x-foreign-exchange": str(info.get("exchange") or ""),
        "x-foreign-routing-key": str(info.get("routing_key") or ""),
    }


def hand_over(app: Celery, queue: str, task_name: str, message: Message) -> None:
    """Publish a foreign JSON message as a task and ack it once that publish is confirmed.

    The task's only argument is the decoded JSON value, whatever its type; it
    runs on the queue ``task_routes`` gives it (the topology's ``run_on``). A
    broker that cannot take the task now gets the message back once (requeue);
    anything else dead-letters it with the reason.
    """
    try:
        payload = decode(message.body)
        app.send_task(task_name, args=[payload], headers=origin_headers(queue, message))
    except OperationalError as error:
        if (message.delivery_info or {}).get("redelivered"):
            refuse(app, queue, message, error)
            return
        log.warning("could not hand a message of %r to %r now (%s); it goes back to the queue", queue, task_name, error)
        _settle(message.requeue)
        return
    except Exception as error:  # RecursionError, MemoryError, an encoder's error: never into kombu
        refuse(app, queue, message, error)
        return
    _settle(message.ack)


def refuse(app: Celery, queue: str, message: Message, error: BaseException) -> None:
    """Dead-letter a foreign message with why in ``x-exception``; without a dead-letter exchange, reject it."""
    reason = f"{type(error).__name__}: {error}"[:500]
    log.warning("foreign message on %r not handed over (%s); dead-lettering it", queue, reason)
    target = (app.conf.get("provisioner_dead_letters") or {}).get(queue)
    if target is not None:
        try:
            publish(app, message, (str(target[0]), str(target[1])), {"x-exception": reason, "x-failed-queue": queue})
        except Exception as failed:
            log.error("could not dead-letter it (%s: %s); rejecting it instead", type(failed).__name__, failed)
        else:
            _settle(message.ack)
            return
    _settle(lambda: message.reject(requeue=False))


def decode(body: bytes | str) -> Any:
    """The JSON value of a body: UTF-8, at most MAX_DEPTH levels deep; UndecodableBody otherwise."""
    if isinstance(body, bytes):
        if not body.strip():
            raise UndecodableBody("empty body")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UndecodableBody(f"not UTF-8 (byte {error.start}: {error.reason})") from None
    else:
        text = body
    try:
        value = json.loads(text)
    except RecursionError:
        raise UndecodableBody(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise UndecodableBody(f"not JSON ({str(error)[:200]})") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise UndecodableBody(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _undecodable(error: BaseException) -> UndecodableBody:
    """kombu's own decoding failed (a ``compression`` header the body does not match)."""
    return UndecodableBody(f"kombu cannot decode it ({type(error).__name__}: {error})")


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a decoded value, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _settle(settle: Any) -> None:
    """Ack, reject or requeue; a connection lost meanwhile brings the message back by itself."""
    try:
        settle()
    except Exception as error:
        log.warning(
            "could not settle a foreign message (%s: %s); the broker redelivers it", type(error).__name__, error
        )
