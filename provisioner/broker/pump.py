"""Moving messages out of a queue, pipelined: many in flight, confirms as they come, acks for confirmed copies only.

The one client-side mover that migrations and `dlq replay` share. A consumer
with a prefetch of :data:`PREFETCH` takes messages; each is published at once
(mandatory, on a confirming channel) where the caller's route says; the
broker's confirms arrive as they come and the source is acked up to the highest
delivery whose copy and every earlier copy are confirmed (one ``multiple`` ack).

A message is therefore never acked before its copy is safe, and at most the
in-flight window (:data:`PREFETCH` copies) is confirmed but not yet acked when
the process or the connection dies: the bound on duplicates. A killed node also
forgets the acks of a classic queue it had not written down: markers (see
``_sync``) bound those to :data:`SYNC_EVERY`, hence :data:`NODE_KILL_WINDOW`.

A move that makes no progress for ``stall_seconds`` (a memory or disk alarm
blocks the publishes, a node stops answering) stops with :class:`MoveStalled`
saying how far it got; nothing unconfirmed is acked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provisioner.broker.lazy import LazyModule
from provisioner.errors import BrokerError

if TYPE_CHECKING:
    import pika
    import pika.exceptions
    import pika.spec
else:  # imported on first use: plan and validate never need it
    pika = LazyModule("pika", "exceptions", "spec")

PREFETCH = 1000  # messages in flight per move: the duplicate bound when the process or its connection is cut
SYNC_EVERY = 1000  # acks between two markers that force a classic source's acks to disk
# The duplicate bound when the broker's node itself is killed: the unacked deliveries (at most PREFETCH, each
# possibly copied) and the acks since the last confirmed marker (at most SYNC_EVERY), which the node forgets.
NODE_KILL_WINDOW = PREFETCH + SYNC_EVERY
MARKER_ROOM = PREFETCH  # free places a length-limited source must have for a marker: it never pushes a message out
MAX_PREFETCH = 65535  # AMQP's prefetch-count is 16 bits
TICK = 0.05  # seconds of waiting for the broker per turn of the loop
MARKER = "x-provisioner-sync"  # header of the empty message that forces a source's acks to disk
EMPTY_CHECK_SECONDS = 0.25  # how often a move asks whether its source is empty

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Send:
    """Where one message goes: an exchange and routing key; ``keep``: a copy at the source's own tail."""

    exchange: str
    routing_key: str
    keep: bool = False  # counted as stayed, not moved (a quorum queue's letter that stays, in order)


@dataclass(frozen=True)
class Stop:
    """The move stops at this message (it stays, with every one after it): the broker would refuse its copy."""

    reason: str


# Where a message goes: a Send; None (it stays, not chosen); a text (it stays, and that is why); a Stop.
Route = Callable[["pika.spec.BasicProperties", bytes], "Send | str | Stop | None"]


class MoveStalled(BrokerError):
    """A move made no progress for too long: blocked by an alarm, or the node stopped answering."""


class MoveRefused(BrokerError):
    """The broker refused a copy (a channel error, a nack or an unroutable copy): the broker's words."""


class MoveNacked(MoveRefused):
    """The broker nacked a copy: a queue restarting after its node was killed, a quorum queue electing a leader.

    Transient (broker.retry): nothing unconfirmed was acked, so a caller that
    retries re-reads where the messages are and moves on; a nack that lasts
    past the retry deadline still ends the move in one line.
    """

    transient = True


class MoveStoppedAt(MoveRefused):
    """The move stopped at a message the broker would refuse (a :class:`Stop`): why, and how many moved before."""

    def __init__(self, reason: str, moved: int) -> None:
        super().__init__(f"{reason}; {moved} message(s) moved before it, it and the rest stay")
        self.reason, self.moved = reason, moved


@dataclass
class Moved:
    """What one pass of the pump did."""

    moved: int = 0  # copies confirmed and their originals acked
    stayed: int = 0  # left at the source (or kept at its tail)
    delivered: int = 0  # deliveries taken from the source
    failed: dict[str, int] = field(default_factory=dict)  # why a message could not go -> how many
    bytes: int = 0  # bodies moved


def copy_properties(properties: pika.spec.BasicProperties) -> pika.spec.BasicProperties:
    """The properties of a copy: the same, without the broker's delivery count (not the message's)."""
    headers = properties.headers
    if headers and "x-delivery-count" in headers:
        properties = pika.spec.BasicProperties(**{**vars(properties)})
        properties.headers = {k: v for k, v in headers.items() if k != "x-delivery-count"} or None
    return properties


class Pump:
    """One pass over a queue on one connection: consume, publish pipelined, ack confirmed copies."""

    def __init__(
        self,
        connection: pika.BlockingConnection,
        source: str,
        route: Route,
        *,
        stall_seconds: float,
        prefetch: int = PREFETCH,
        quorum: bool = False,
        sync_every: int = 0,
        final_sync: bool = False,
        marker_room: Callable[[], bool] | None = None,
    ) -> None:
        self.connection, self.source, self.route = connection, source, route
        self.sync_every = sync_every  # acks between two markers that force them to disk (0: never)
        self.marker_room = marker_room  # whether a marker fits in a length-limited source now (None: always)
        self.final_sync = final_sync  # a last marker for the last acks (a later pass over the source drops it)
        self._unsynced = 0
        self._marker_out = False  # a marker is published, not yet confirmed: acks wait for it
        self._markers: set[int] = set()  # delivery tags of markers taken from the source
        self._markers_sent = 0
        self._finishing = False
        self.stall_seconds, self.prefetch, self.quorum = stall_seconds, prefetch, quorum
        self.result = Moved()
        self.blocked: str | None = None
        self._closed: str | None = None
        self._returned: str | None = None
        self._nacked = False
        self._pending: deque[tuple[int, int]] = deque()  # (publish sequence number, source delivery tag)
        self._confirmed_upto = 0
        self._confirmed: set[int] = set()
        self._sequence = 0
        self._stays_unacked = 0
        self._last_progress = time.monotonic()
        self._stop_after: int | None = None
        self._limit: int | None = None
        self._consumer: str | None = None
        self._inbox: deque[tuple[int, Any, bytes]] = deque()
        self._stopped: str | None = None  # why the move stops early (a Stop): raised once the rest is settled
        self._ackable: list[int] = []
        self._sent = 0  # copies published to a destination (not to the source's own tail)
        self._hold_acks = False
        self._checked = time.monotonic()
        self._open_channels()

    def _open_channels(self) -> None:
        """Two channels of the underlying connection, driven by callbacks (BlockingChannel waits for each reply)."""
        self.inbound, self.outbound = self._raw_channel(), self._raw_channel()
        self._wait(lambda done: self.inbound.basic_qos(prefetch_count=self.prefetch, callback=done))
        self._wait(lambda done: self.outbound.confirm_delivery(ack_nack_callback=self._on_confirm, callback=done))
        if self.sync_every:  # markers go out on the channel of the acks: the broker keeps their order
            self._wait(lambda done: self.inbound.confirm_delivery(ack_nack_callback=self._on_synced, callback=done))
        self.outbound.add_on_return_callback(self._on_return)
        self.outbound.add_on_close_callback(self._on_close)
        self.inbound.add_on_close_callback(self._on_close)
        self.connection.add_on_connection_blocked_callback(self._on_blocked)
        self.connection.add_on_connection_unblocked_callback(self._on_unblocked)

    def _raw_channel(self) -> Any:
        return raw_channel(self.connection)

    def _wait(self, command: Callable[[Callable[[Any], None]], None]) -> None:
        """Send a command with a reply and wait for it, handling deliveries and confirms meanwhile."""
        answered: list[bool] = []
        command(lambda _frame: answered.append(True))
        while not answered:
            self._turn()

    # Broker events (called from process_data_events).

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self._nacked = True
            return
        if method.multiple:
            self._confirmed_upto = max(self._confirmed_upto, method.delivery_tag)
        else:
            self._confirmed.add(method.delivery_tag)

    def _on_return(self, _channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        self._returned = (
            f"no queue takes the message (unroutable: exchange {method.exchange!r} key {method.routing_key!r})"
        )

    def _on_close(self, _channel: Any, reason: BaseException) -> None:
        code, text = getattr(reason, "reply_code", None), getattr(reason, "reply_text", str(reason))
        self._closed = self._closed or (f"{code} {text}" if code else str(text))

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self.blocked = str(getattr(frame.method, "reason", "") or "blocked")

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = None

    def _on_delivery(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._inbox.append((method.delivery_tag, properties, body))  # handled after the I/O: a route may block

    def _coalesce(self) -> None:
        """Join the frames waiting to be sent into one buffer: pika sends each frame with a call of its own."""
        buffers = getattr(getattr(self.connection._impl, "_transport", None), "_tx_buffers", None)
        if buffers is not None and len(buffers) > 1:
            joined = b"".join(buffers)
            buffers.clear()
            buffers.append(joined)

    def _on_synced(self, _frame: Any) -> None:
        self._marker_out = False  # a nack too: the acks before it are no worse off than without a marker

    def _handle(self, tag: int, properties: Any, body: bytes) -> None:
        self.result.delivered += 1
        self._last_progress = time.monotonic()
        if properties.headers and MARKER in properties.headers:  # an earlier move's marker: dropped, never copied
            self._markers.add(tag)
            self._pending.append((0, tag))  # sequence 0: nothing to wait for
            return
        surplus = self._stop_after is not None and self.result.delivered > self._stop_after + self._markers_sent
        limited = self._limit is not None and self._sent >= self._limit
        chosen = None if surplus or limited or self._stopped else self.route(properties, body)
        if isinstance(chosen, Stop):
            self._stopped = self._stopped or chosen.reason
            chosen = None
        if chosen is None or isinstance(chosen, str):
            if isinstance(chosen, str):
                self.result.failed[chosen] = self.result.failed.get(chosen, 0) + 1
            if self.quorum:  # a requeue counts as a delivery on a quorum queue: keep it at the tail instead
                chosen = Send("", self.source, keep=True)
            else:
                self._stay()
                return
        self._sequence += 1
        self._pending.append((self._sequence, tag if not chosen.keep else -tag))
        self.outbound.basic_publish(
            chosen.exchange, chosen.routing_key, body, copy_properties(properties), mandatory=True
        )
        if not chosen.keep:
            self.result.bytes += len(body)
            self._sent += 1

    def _stay(self) -> None:
        """A classic queue's message that stays: unacked, so it goes back to its place when the channel closes."""
        self.result.stayed += 1
        self._stays_unacked += 1
        if self._stays_unacked % 100 == 0:  # room for more: stayed messages hold prefetch slots
            wanted = self.prefetch + self._stays_unacked
            self.inbound.basic_qos(prefetch_count=wanted if wanted <= MAX_PREFETCH else 0)

    def _settle(self) -> None:
        """Ack the source up to the newest delivery whose copy, and every earlier one, is confirmed."""
        tags: list[int] = []
        while self._pending:
            sequence, tag = self._pending[0]
            if sequence > self._confirmed_upto and sequence not in self._confirmed:
                break
            self._pending.popleft()
            self._confirmed.discard(sequence)
            tags.append(tag)
        if tags:
            self._last_progress = time.monotonic()
            self._ackable += tags
        if self._ackable and not self._hold_acks and not self._marker_out:
            cut = self._room(self._ackable)
            self._ack(self._ackable[:cut])
            self._ackable = self._ackable[cut:]

    def _room(self, tags: list[int]) -> int:
        """How many of ``tags`` may be acked before a marker must put the acks on disk."""
        if not self.sync_every or ((self._consumer is None or self._finishing) and not self.final_sync):
            return len(tags)  # no marker can follow now: ack them all
        room = self.sync_every - self._unsynced
        for index, tag in enumerate(tags):
            if tag not in self._markers:
                room -= 1
                if room < 0:
                    return index
        return len(tags)

    def _ack(self, tags: list[int]) -> None:
        if not tags:
            return
        for tag in tags:
            if tag in self._markers:
                self._markers.discard(tag)
            else:
                self._unsynced += 1  # a marker's own ack needs no marker: it is dropped either way
                if tag < 0:
                    self.result.stayed += 1
                else:
                    self.result.moved += 1
        if self._stays_unacked == 0:  # nothing unacked of ours below: one ack covers them all
            self.inbound.basic_ack(abs(tags[-1]), multiple=True)
        else:
            for tag in tags:
                self.inbound.basic_ack(abs(tag))
        if self.sync_every and self._unsynced >= self.sync_every:
            self._sync()

    def _sync(self) -> None:
        """Publish a marker behind the acks and hold further acks until it is confirmed.

        A durable queue confirms a persistent message only once its index is on
        disk, acks written before it included: a node killed later forgets at
        most the acks since the last confirmed marker.
        """
        if self._stopped is not None or ((self._consumer is None or self._finishing) and not self.final_sync):
            return  # the pass is over (or stops here): a marker now would stay behind in the source
        if self.marker_room is not None and not self.marker_room():
            self.sync_every = 0  # the source filled up: no more markers this pass (one would push a message out)
            log.warning(
                "warning: queue %r is near its length limit: no more markers this pass, so a node killed now may "
                "duplicate more than %d messages",
                self.source,
                NODE_KILL_WINDOW,
            )
            return
        self._unsynced, self._marker_out = 0, True
        self._markers_sent += 1  # it comes back to this very consumer: one more delivery to take
        marker = pika.spec.BasicProperties(delivery_mode=2, headers={MARKER: 1})
        self.inbound.basic_publish("", self.source, b"", marker)

    # The loop.

    def _problem(self) -> str | None:
        if self._closed:
            return self._closed
        if self._returned:
            return self._returned
        if self._nacked:
            return "the broker refused a copy (nack)"
        return None

    def _turn(self) -> None:
        self._coalesce()
        self.connection.process_data_events(time_limit=0 if self._inbox else TICK)
        if (problem := self._problem()) is not None:
            if self.inbound.is_open and not self._hold_acks:  # what was confirmed before the refusal moved: ack it
                self.sync_every, self._marker_out = 0, False
                self._settle()
            if self._closed or self._returned:
                raise MoveRefused(problem + _hint(problem))
            raise MoveNacked(problem)
        while self._inbox and self._problem() is None:
            self._handle(*self._inbox.popleft())
        self._settle()
        if time.monotonic() - self._last_progress > self.stall_seconds:
            why = (
                f"the broker blocks publishing ({self.blocked}: a memory or disk alarm, rabbitmqctl status shows it)"
                if self.blocked
                else "the broker stopped answering"
            )
            raise MoveStalled(
                f"no progress for {self.stall_seconds:.0f} s: {why}; {self.result.moved} moved, every other message "
                f"is still in {self.source!r} ({len(self._pending)} of them copied unconfirmed): run the command "
                "again once the broker is back"
            )

    def run(
        self, total: int | None = None, until_empty: Callable[[], bool] | None = None, limit: int | None = None
    ) -> Moved:
        """Take ``total`` deliveries (or until ``until_empty`` says the source is empty), at most ``limit`` moved.

        A quorum queue whose messages may go to its own tail is taken in batches
        of at most the prefetch, each acked only once its consumer is cancelled:
        the broker can then never hand out the copies of the same pass.
        """
        self._stop_after, self._limit = total, limit
        try:
            if self.quorum and total is not None:
                while self.result.delivered < total:
                    if not self._batch(min(self.prefetch, total - self.result.delivered), until_empty):
                        break
            else:
                self._consume(total, until_empty, limit)
        finally:
            self._close()
        if self._stopped is not None:
            raise MoveStoppedAt(self._stopped, self.result.moved)
        return self.result

    def _consume(self, total: int | None, until_empty: Callable[[], bool] | None, limit: int | None) -> None:
        self._consumer = self.inbound.basic_consume(self.source, self._on_delivery)
        while not self._done(total, until_empty, limit):
            self._turn()
        self._cancel()
        while self._pending or (self._ackable and not self._hold_acks) or self._marker_out:
            self._turn()
        if self.final_sync and self.sync_every and self._unsynced and self._problem() is None and not self._stopped:
            self._sync()
            while self._marker_out:
                self._turn()
        while self._pending:  # held acks: every copy confirmed first
            self._turn()

    def _batch(self, size: int, until_empty: Callable[[], bool] | None) -> bool:
        """One batch of a quorum pass; False when nothing came (the source ran dry)."""
        self._wait(lambda done: self.inbound.basic_qos(prefetch_count=size, callback=done))
        self._hold_acks = True
        before = self.result.delivered
        self._consume(before + size, until_empty, None)
        self._hold_acks = False
        if self._ackable:
            self._ack(self._ackable)
            self._ackable = []
        return self.result.delivered > before

    def _done(self, total: int | None, until_empty: Callable[[], bool] | None, limit: int | None) -> bool:
        if self._stopped is not None:
            return True
        if limit is not None and self._sent >= limit and not self.quorum:
            return True
        if total is not None and self.result.delivered >= total + self._markers_sent:
            return True
        now = time.monotonic()
        if until_empty is None or now - self._checked < EMPTY_CHECK_SECONDS or self.blocked is not None:
            return False  # a blocked connection opens no channel to count on: _turn's stall check ends the move
        self._checked = now
        return until_empty()  # other consumers take some: the source is empty before ``total`` came to us

    def _cancel(self) -> None:
        self._finishing = True
        cancelled: list[bool] = []
        if self._consumer is not None and self.inbound.is_open:
            # Not basic_cancel: pika rejects with requeue what arrives after it, so deliveries the broker sent
            # before the cancel-ok went back unmoved (a replay said "1 replayed, 39 stay" when the source read
            # empty with them in flight) and, on a quorum queue, each such requeue counts as a delivery.
            # Sent as a bare command, they reach _on_delivery like the others and are handled.
            self.inbound._rpc(
                pika.spec.Basic.Cancel(consumer_tag=self._consumer),
                lambda _frame: cancelled.append(True),
                [pika.spec.Basic.CancelOk],
            )
            while not cancelled and self._problem() is None:
                self._turn()
        self._consumer = None

    def _close(self) -> None:
        """Close both channels: what stayed unacked goes back to its place (nothing unconfirmed was acked)."""
        if not self.connection.is_open or self.blocked is not None:
            return  # a blocked or lost connection is closed (or dropped) by its owner
        self._marker_out = False  # a refusal may have closed the channel its confirm would come on
        for channel in (self.inbound, self.outbound):
            if channel.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                    channel.close()
        deadline = time.monotonic() + self.stall_seconds
        while (self.inbound.is_closing or self.outbound.is_closing) and time.monotonic() < deadline:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                self.connection.process_data_events(time_limit=TICK)


class RawCookie:
    """What BlockingConnection.close asks of each channel, for a raw one (else it fails on a missing wrapper)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    @property
    def is_open(self) -> bool:
        return bool(self.channel.is_open)

    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> None:
        self.channel.close(reply_code, reply_text)

    def _dispatch_events(self) -> None:
        """Nothing is queued for a raw channel: its callbacks run as frames arrive."""


def raw_channel(connection: pika.BlockingConnection) -> Any:
    """A channel of the connection's underlying (callback) connection: commands can be pipelined on it."""
    opened: list[Any] = []
    connection._impl.channel(on_open_callback=opened.append)
    while not opened:
        connection.process_data_events(time_limit=TICK)
    opened[0]._set_cookie(RawCookie(opened[0]))  # the connection closes it with the others
    return opened[0]


def call_and_wait(
    connection: pika.BlockingConnection, command: Callable[[Callable[[Any], None]], None], channel: Any, seconds: float
) -> str | None:
    """Send a command with a reply on a raw channel and wait: None once answered, else the broker's refusal."""
    answered: list[bool] = []
    closed: list[str] = []
    channel.add_on_close_callback(
        lambda _c, reason: closed.append(f"{getattr(reason, 'reply_code', '')} {getattr(reason, 'reply_text', reason)}")
    )
    command(lambda _frame: answered.append(True))
    deadline = time.monotonic() + seconds
    while not answered and not closed:
        if time.monotonic() > deadline:
            raise MoveStalled(f"the broker did not answer for {seconds:.0f} s")
        connection.process_data_events(time_limit=TICK)
    return closed[0].strip() if closed else None


def close_quietly_channel(connection: pika.BlockingConnection, channel: Any) -> None:
    """Close a raw channel and wait (briefly) for the broker to confirm it."""
    if not channel.is_open:
        return
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        channel.close()
        deadline = time.monotonic() + 5
        while channel.is_closing and time.monotonic() < deadline:
            connection.process_data_events(time_limit=TICK)


def _hint(refusal: str) -> str:
    """What to do about a refusal whose cause a person may not know."""
    if "user_id" in refusal:
        return (
            "; a message carries another user's user_id: the broker takes its copy only from that user or from "
            "a user with the 'impersonator' tag"
        )
    return ""


def foreign_user_id(user: str | None) -> Callable[[Any], str | None]:
    """A check of a message's user_id against the user that would publish its copy (the broker compares them)."""

    def check(properties: Any) -> str | None:
        if properties.user_id is None or user is None or properties.user_id == user:
            return None
        return (
            f"a message carries user_id {properties.user_id!r}, not user {user!r}: the broker takes its copy only "
            "from that user or from a user with the 'impersonator' tag"
        )

    return check
