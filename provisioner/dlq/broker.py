"""Dead letters over AMQP: read them without losing or reordering them, move them back with confirms, purge.

Reading a classic queue: consume without acking, then close the channel; the
broker puts the messages back where they were. A quorum queue counts every
such return as a delivery (checked on RabbitMQ 3.10: with ``x-delivery-limit``
a message is dropped or dead-lettered after enough of them), so a quorum
dead-letter queue is never read that way: one pass moves each of its messages
present at the start to its own tail, each acked only after its copy is
confirmed, which keeps their order and resets their delivery count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from provisioner.broker.amqp import count_queues
from provisioner.broker.pump import MARKER, SYNC_EVERY, MoveNacked, MoveRefused, Pump, Send, foreign_user_id
from provisioner.broker.words import broker_words
from provisioner.dlq.letters import DeadLetterQueue, Destination, Letter
from provisioner.errors import BrokerError

DEFAULT_STALL_SECONDS = 45.0

log = logging.getLogger(__name__)

# Where a letter goes; None: it stays (not selected); a text: it stays, and that is why it could not go.
Decide = Callable[[Letter], "Destination | str | None"]


@dataclass
class PassReport:
    """What one pass over a dead-letter queue did."""

    seen: list[Letter] = field(default_factory=list)  # the first letters read, in queue order (up to keep)
    moved: int = 0
    stayed: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # why a chosen destination refused -> how many


def message_count(connection: pika.BlockingConnection, queue: DeadLetterQueue) -> int:
    """Exact ready messages by passive declare; a missing queue is one clear error."""
    return message_counts(connection, [queue])[queue.name]


def message_counts(connection: pika.BlockingConnection, queues: list[DeadLetterQueue]) -> dict[str, int]:
    """Each queue's exact ready messages, by passive declares pipelined on one connection (broker/passive.py).

    The first queue in the list that is missing or refused is one clear error.
    """
    counts = {}
    for (name, found), queue in zip(count_queues(connection, [queue.name for queue in queues]), queues, strict=True):
        if found is None:
            raise BrokerError(
                f"dead-letter queue {name!r} does not exist in vhost {queue.vhost!r} (run provision apply)"
            )
        counts[name] = found[0]
    return counts


def _letter(properties: pika.BasicProperties, body: bytes) -> Letter:
    return Letter(body, dict(properties.headers or {}), properties.content_type, properties.timestamp)


def _deliveries(channel: BlockingChannel, queue: str, total: int) -> Iterator[tuple[int, pika.BasicProperties, bytes]]:
    """The first ``total`` messages of the queue (fewer if it runs dry), as (tag, properties, body).

    One basic.get each: a consumer's prefetched surplus would be nacked back on
    cancel, and on a quorum queue that counts as a delivery and moves it ahead.
    """
    for _ in range(total):
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            return
        yield method.delivery_tag, properties, body


def peek(connection: pika.BlockingConnection, queue: DeadLetterQueue, limit: int) -> PassReport:
    """The first ``limit`` letters of the queue; every message stays, in its place."""
    if queue.quorum:
        return run_pass(connection, queue, lambda _: None, keep=limit)
    report = PassReport()
    channel = connection.channel()
    for _, properties, body in _deliveries(channel, queue.name, min(limit, message_count(connection, queue))):
        if not (properties.headers and MARKER in properties.headers):  # an interrupted replay's, not a letter
            report.seen.append(_letter(properties, body))
    channel.close()  # never acked: the broker puts them back where they were
    report.stayed = len(report.seen)
    return report


class Targets:
    """Checks each destination once (passive declare) before the first message goes there."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection
        self.known: dict[tuple[str, str], str | None] = {}

    def problem(self, destination: Destination) -> str | None:
        key = (destination.exchange, destination.routing_key)
        if key not in self.known:
            self.known[key] = self._check(destination)
        return self.known[key]

    def _check(self, destination: Destination) -> str | None:
        channel = self.connection.channel()
        try:
            if destination.exchange == "":
                channel.queue_declare(destination.routing_key, passive=True)
            else:
                channel.exchange_declare(destination.exchange, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 404:
                return f"{destination.describe()} does not exist"
            return f"{destination.describe()}: {error.reply_code} {broker_words(error.reply_text)}"
        channel.close()
        return None


def run_pass(
    connection: pika.BlockingConnection,
    queue: DeadLetterQueue,
    decide: Decide,
    keep: int = 0,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    user: str | None = None,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
) -> PassReport:
    """Visit the messages present at the start once: move those ``decide`` places, keep the rest in order.

    The pipelined pump (broker/pump.py) moves them: a message leaves the queue
    only after its copy is confirmed (mandatory: an unroutable copy stops the
    pass), at least once, never lost. At most ``limit`` messages move. A
    message whose destination is missing, or that carries a ``user_id`` other
    than ``user`` (the broker refuses such a copy), stays, with the reason.
    """
    total = message_count(connection, queue)
    report = PassReport()
    targets = Targets(connection)
    forged = foreign_user_id(user)

    def route(properties: pika.BasicProperties, body: bytes) -> Send | str | None:
        letter = _letter(properties, body)
        if len(report.seen) < keep:
            report.seen.append(letter)
        chosen = decide(letter)
        if progress is not None:
            progress(1)
        if not isinstance(chosen, Destination):
            return chosen
        return targets.problem(chosen) or forged(properties) or Send(chosen.exchange, chosen.routing_key)

    sync_every = 0 if queue.quorum else SYNC_EVERY  # a killed node forgets at most that many acks (pump.py)
    empty = None if queue.quorum else (lambda: message_count(connection, queue) == 0)  # all handed to us
    deadline, pause = time.monotonic() + stall_seconds, NACK_PAUSE
    while True:
        pump = Pump(
            connection, queue.name, route, stall_seconds=stall_seconds, quorum=queue.quorum, sync_every=sync_every
        )
        try:
            done = pump.run(total=total, limit=limit, until_empty=empty)
            break
        except MoveNacked as error:
            _add(report, pump.result.moved, pump.result.failed)
            # a queue restarting (its node was killed) nacks for a moment; nothing unconfirmed was acked. A
            # quorum pass is not run again: it keeps letters at its tail, and a second pass would reorder them
            if queue.quorum or time.monotonic() + pause > deadline:
                raise _stopped(queue, error, report.moved) from error
            log.warning("replay of %r failed (%s); retrying in %.2fs", queue.name, error, pause)
            time.sleep(pause)
            pause = min(pause * 2, MAX_NACK_PAUSE)
            total = message_count(connection, queue)
            limit = None if limit is None else limit - pump.result.moved
        except MoveRefused as error:
            raise _stopped(queue, error, report.moved + pump.result.moved) from error
    _add(report, done.moved, done.failed)
    report.stayed = total - done.moved
    return report


NACK_PAUSE = 0.25  # seconds before a pass refused by a nack runs again, doubled each time
MAX_NACK_PAUSE = 4.0


def _add(report: PassReport, moved: int, failed: dict[str, int]) -> None:
    report.moved += moved
    for why, count in failed.items():
        report.failed[why] = report.failed.get(why, 0) + count


def _stopped(queue: DeadLetterQueue, error: MoveRefused, moved: int) -> BrokerError:
    return BrokerError(
        f"replay of {queue.name!r} stopped: the broker refused a copy: {error}; {moved} message(s) moved, "
        f"every other one is still in {queue.name!r}"
    )


def purge(connection: pika.BlockingConnection, queue: DeadLetterQueue) -> int:
    """Delete every message of the queue; how many there were."""
    message_count(connection, queue)  # a missing queue is an error, not "0 purged"
    channel = connection.channel()
    ok = channel.queue_purge(queue.name)
    channel.close()
    return int(ok.method.message_count)
