"""The broker side of a queue migration: observe two queues, declare, bind, move messages, delete.

Counts come from AMQP (a passive declare is exact; the management API's figures
lag by its statistics interval); properties and bindings come from the
management API (read from the broker's tables, not from statistics, so current).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from provisioner.broker.amqp import count_queue, open_connection
from provisioner.broker.lazy import LazyModule
from provisioner.broker.management import Management
from provisioner.broker.retry import DEFAULT_BACKOFF, NO_RETRY, Backoff, call_with_retry
from provisioner.errors import BrokerError
from provisioner.migration.steps import LiveQueue, MigrationReport, Observation, Step, migrate_queue
from provisioner.topology.model import Binding, Queue

if TYPE_CHECKING:
    import pika
    import pika.exceptions
    from pika.adapters.blocking_connection import BlockingChannel
else:  # imported on first use: plan and validate never need it
    pika = LazyModule("pika", "exceptions")

PREFETCH = 200
IDLE_SECONDS = 0.2  # how long a drained queue stays quiet before its count is checked

log = logging.getLogger(__name__)


class PikaMigrationBroker:
    """A :class:`provisioner.migration.steps.MigrationBroker` on one pika connection to one vhost."""

    def __init__(self, connection: pika.BlockingConnection, vhost: str, management: Management) -> None:
        self.connection, self.vhost, self.management = connection, vhost, management

    def _channel(self) -> BlockingChannel:
        return self.connection.channel()

    def _counts(self, name: str) -> tuple[int, int] | None:
        """(ready messages, consumers) by passive declare, None when the queue does not exist."""
        channel = self._channel()
        found = count_queue(channel, name)
        if found is not None:
            channel.close()
        return found

    def _live(self, name: str) -> LiveQueue | None:
        info = self.management.queue(self.vhost, name)
        counts = self._counts(name)
        if info is None or counts is None:
            return None
        return LiveQueue(
            name=name,
            type=info.get("type") or "classic",
            durable=bool(info.get("durable")),
            auto_delete=bool(info.get("auto_delete")),
            exclusive=bool(info.get("exclusive")),
            arguments=dict(info.get("arguments") or {}),
            messages=counts[0],
            consumers=counts[1],
        )

    def _bindings(self, name: str, queue: str) -> set[Binding]:
        return {
            Binding(self.vhost, row["source"], queue, "queue", row["routing_key"], dict(row.get("arguments") or {}))
            for row in self.management.queue_bindings(self.vhost, name)
            if row.get("source")  # the default exchange's implicit binding cannot be changed
        }

    def observe(self, queue: str, temporary: str) -> Observation:
        """Both queues and the union of their bindings, all named after ``queue``."""
        bindings = self._bindings(queue, queue) | self._bindings(temporary, queue)
        return Observation(
            self._live(queue), self._live(temporary), tuple(sorted(bindings, key=lambda binding: binding.key))
        )

    def probe(self, queue: Queue) -> LiveQueue:
        """Declare ``queue``, read back what the broker made of it, delete it; the broker's refusal raises."""
        self._drop(queue.name)  # a killed run may have left one behind, with other arguments
        try:
            self.declare(queue)
        except BrokerError as error:
            raise BrokerError(f"the broker refuses the new properties: {error}") from error
        kept = self._live(queue.name)
        self._drop(queue.name)
        if kept is None:
            raise BrokerError(f"queue {queue.name!r} vanished right after it was declared")
        return kept

    def _drop(self, name: str) -> None:
        channel = self._channel()
        channel.queue_delete(name)  # deleting a missing queue is not an error
        channel.close()

    def declare(self, queue: Queue) -> None:
        channel = self._channel()
        try:
            channel.queue_declare(
                queue.name, durable=queue.durable, auto_delete=queue.auto_delete, arguments=queue.declare_arguments
            )
        except pika.exceptions.ChannelClosedByBroker as error:
            raise BrokerError(f"cannot declare queue {queue.name!r}: {error.reply_text}") from error
        channel.close()

    def bind(self, binding: Binding) -> None:
        channel = self._channel()
        try:
            channel.queue_bind(binding.destination, binding.source, binding.routing_key, binding.arguments or None)
        except pika.exceptions.ChannelClosedByBroker as error:
            raise _refused("bind", binding, error) from error
        channel.close()

    def unbind(self, binding: Binding) -> None:
        channel = self._channel()
        try:
            channel.queue_unbind(binding.destination, binding.source, binding.routing_key, binding.arguments or None)
        except pika.exceptions.ChannelClosedByBroker as error:
            raise _refused("unbind", binding, error) from error
        channel.close()

    def move(self, source: str, destination: str) -> int:
        """Move every message, each acked at the source only after the destination confirmed it."""
        inbound, outbound = self._channel(), self._channel()
        inbound.basic_qos(prefetch_count=PREFETCH)
        outbound.confirm_delivery()
        moved = 0
        for method, properties, body in inbound.consume(source, inactivity_timeout=IDLE_SECONDS):
            if method is None:
                counts = self._counts(source)
                if counts is None or counts[0] == 0:
                    break
                continue
            # mandatory: an unroutable message raises UnroutableError and stays at the source
            outbound.basic_publish("", destination, body, properties, mandatory=True)
            inbound.basic_ack(method.delivery_tag)
            moved += 1
        inbound.cancel()
        inbound.close()
        outbound.close()
        log.info("moved %d messages %s -> %s", moved, source, destination)
        return moved

    def delete_if_empty(self, queue: str, quorum: bool) -> bool:
        """Delete the queue if it holds no message and has no consumer; False when it does."""
        counts = self._counts(queue)
        if counts is None:
            return True
        if counts != (0, 0):
            return False
        channel = self._channel()
        try:
            # Quorum queues answer if-empty with NOT_IMPLEMENTED, so for them the count above is the check.
            channel.queue_delete(queue, if_empty=not quorum)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 406:  # a message arrived since the count
                return False
            raise
        channel.close()
        return True


def _refused(verb: str, binding: Binding, error: pika.exceptions.ChannelClosedByBroker) -> BrokerError:
    """A binding step the broker refused, as one line with the broker's words (never retried)."""
    where = "to" if verb == "bind" else "from"
    return BrokerError(
        f"migration: cannot {verb} queue {binding.destination!r} {where} exchange {binding.source!r} "
        f"(routing key {binding.routing_key!r}) in vhost {binding.vhost!r}: {error.reply_code} {error.reply_text}"
    )


def run_migration(
    target: Queue,
    parameters: pika.ConnectionParameters,
    management: Management,
    *,
    allow_consumers: bool = False,
    before_step: Callable[[Step], None] | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> MigrationReport:
    """Migrate one queue on a connection of its own; a transient fault re-runs it from the broker's state."""

    def attempt() -> MigrationReport:
        connection = open_connection(parameters, NO_RETRY, describe=f"migration of queue {target.name!r}")
        try:
            broker = PikaMigrationBroker(connection, target.vhost, management)
            return migrate_queue(target, broker, allow_consumers=allow_consumers, before_step=before_step)
        finally:
            if connection.is_open:
                connection.close()

    try:
        return call_with_retry(attempt, backoff, describe=f"migration of queue {target.name!r}")
    except pika.exceptions.ChannelClosedByBroker as error:
        raise BrokerError(
            f"migration of queue {target.name!r} in vhost {target.vhost!r}: {error.reply_code} {error.reply_text}"
        ) from error
    except (pika.exceptions.AMQPError, OSError) as error:
        raise BrokerError(
            f"migration of queue {target.name!r} in vhost {target.vhost!r}: connection lost ({type(error).__name__})"
        ) from error
