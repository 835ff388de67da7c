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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from provisioner.broker.amqp import count_queue
from provisioner.dlq.letters import DeadLetterQueue, Destination, Letter
from provisioner.errors import BrokerError

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
    channel = connection.channel()
    try:
        found = count_queue(channel, queue.name)
    except pika.exceptions.ChannelClosedByBroker as error:
        raise BrokerError(f"reading queue {queue.name!r}: {error.reply_code} {error.reply_text}") from error
    if found is None:
        raise BrokerError(
            f"dead-letter queue {queue.name!r} does not exist in vhost {queue.vhost!r} (run provision apply)"
        )
    channel.close()
    return found[0]


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
            return f"{destination.describe()}: {error.reply_code} {error.reply_text}"
        channel.close()
        return None


def _copy(properties: pika.BasicProperties) -> pika.BasicProperties:
    """The properties to publish a copy with; the broker's delivery count is not the message's."""
    headers = {k: v for k, v in (properties.headers or {}).items() if k != "x-delivery-count"}
    names: tuple[str, ...] = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id")
    names += ("reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")
    return pika.BasicProperties(headers=headers or None, **{n: getattr(properties, n) for n in names})


def _publish(
    channel: BlockingChannel, destination: Destination, properties: pika.BasicProperties, body: bytes
) -> str | None:
    """Publish with mandatory on a confirming channel; the refusal's reason, or None once confirmed."""
    try:
        channel.basic_publish(destination.exchange, destination.routing_key, body, _copy(properties), mandatory=True)
    except pika.exceptions.UnroutableError:
        return f"{destination.describe()}: no queue takes the message (unroutable)"
    except pika.exceptions.NackError:
        return f"{destination.describe()}: the broker refused the message (nack)"
    return None


def run_pass(
    connection: pika.BlockingConnection,
    queue: DeadLetterQueue,
    decide: Decide,
    keep: int = 0,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PassReport:
    """Visit the messages present at the start once: move those ``decide`` places, keep the rest in order.

    A message leaves the queue only after its copy is confirmed (mandatory, so
    an unroutable copy counts as refused): at least once, never lost. At most
    ``limit`` messages move. A message whose destination refuses it stays.
    """
    total = message_count(connection, queue)
    report = PassReport()
    targets = Targets(connection)
    inbound, outbound = connection.channel(), connection.channel()
    outbound.confirm_delivery()
    for tag, properties, body in _deliveries(inbound, queue.name, total):
        letter = _letter(properties, body)
        if len(report.seen) < keep:
            report.seen.append(letter)
        chosen = decide(letter) if limit is None or report.moved < limit else None
        refusal = chosen if isinstance(chosen, str) else None
        if isinstance(chosen, Destination):
            refusal = targets.problem(chosen)
        if isinstance(chosen, Destination) and refusal is None:
            refusal = _publish(outbound, chosen, properties, body)
            if refusal is None:
                inbound.basic_ack(tag)
                report.moved += 1
        if chosen is None or refusal is not None:
            if refusal is not None:
                report.failed[refusal] = report.failed.get(refusal, 0) + 1
            report.stayed += 1
            if queue.quorum:
                _keep_at_tail(inbound, outbound, queue.name, tag, properties, body)
        if progress is not None:
            progress(1)
        if not queue.quorum and limit is not None and report.moved >= limit:
            break  # the rest of a classic queue was never touched
    inbound.close()  # classic: what stayed unacked goes back to its place
    outbound.close()
    report.stayed = max(report.stayed, total - report.moved)  # a classic pass stops at --limit
    return report


def _keep_at_tail(
    inbound: BlockingChannel,
    outbound: BlockingChannel,
    queue: str,
    tag: int,
    properties: pika.BasicProperties,
    body: bytes,
) -> None:
    """Move a quorum queue's message to its own tail, in order: a requeue would count as a delivery."""
    refusal = _publish(outbound, Destination("", queue, "stays"), properties, body)
    if refusal is not None:
        raise BrokerError(f"cannot keep a message in {queue!r}: {refusal}; it stays unacked")
    inbound.basic_ack(tag)


def purge(connection: pika.BlockingConnection, queue: DeadLetterQueue) -> int:
    """Delete every message of the queue; how many there were."""
    message_count(connection, queue)  # a missing queue is an error, not "0 purged"
    channel = connection.channel()
    ok = channel.queue_purge(queue.name)
    channel.close()
    return int(ok.method.message_count)
