"""Which of the rendered queues a task message came from, however it reached the worker.

A message published straight to its queue names the queue by its exchange and
routing key. One that waited in Celery's native delayed delivery (every
countdown and ETA on a non-direct exchange once a quorum queue exists) arrives
from ``celery_delayed_delivery`` with kombu's routing key ``<28 bits>.<key>``,
so the worker's own consumer tag (which kombu keeps per queue name) is asked
first, then the key without its delay prefix.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from celery import Celery, bootsteps
from kombu import Queue as KombuQueue

# kombu's native_delayed_delivery.calculate_routing_key: 28 binary digits, each followed by a dot.
DELAY_PREFIX = re.compile(r"^(?:[01]\.){28}")

_task_consumers: weakref.WeakKeyDictionary[Celery, Any] = weakref.WeakKeyDictionary()


class TaskConsumerTags(bootsteps.StartStopStep):  # type: ignore[misc]
    """Remembers the worker's consumer, whose task consumer maps each consumer tag to its queue."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        _task_consumers[parent.app] = parent


def work_queue(app: Celery, delivery_info: dict[str, Any]) -> KombuQueue | None:
    """The rendered queue a message was delivered from; None when no rendered queue matches."""
    queues = {queue.name: queue for queue in app.conf.task_queues or ()}
    by_tag = _queue_of_tag(app, delivery_info.get("consumer_tag"))
    if by_tag in queues:
        return queues[by_tag]
    exchange, routing_key = str(delivery_info.get("exchange") or ""), str(delivery_info.get("routing_key") or "")
    delayed = DELAY_PREFIX.match(routing_key)
    if delayed:
        return _delayed_queue(queues.values(), routing_key[delayed.end() :])
    for queue in queues.values():
        if exchange == "" and routing_key == queue.name:
            return queue
        if queue.exchange is not None and queue.exchange.name == exchange and queue.routing_key == routing_key:
            return queue
    return None


def came_delayed(delivery_info: dict[str, Any]) -> bool:
    """Whether the message arrived through native delayed delivery (its routing key carries the delay)."""
    return DELAY_PREFIX.match(str(delivery_info.get("routing_key") or "")) is not None


def _queue_of_tag(app: Celery, tag: Any) -> str | None:
    consumer = _task_consumers.get(app)
    task_consumer = getattr(consumer, "task_consumer", None)
    if not tag or task_consumer is None:
        return None
    return next((name for name, active in dict(task_consumer._active_tags).items() if active == tag), None)


def _delayed_queue(queues: Any, routing_key: str) -> KombuQueue | None:
    """The one non-direct queue bound with this key (kombu binds exactly those to the delayed exchanges)."""
    found = [
        queue
        for queue in queues
        if queue.exchange is not None and queue.exchange.type != "direct" and queue.routing_key == routing_key
    ]
    return found[0] if len(found) == 1 else None
