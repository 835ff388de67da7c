"""What the queues a plan touches hold: ready and unacknowledged messages, read so that neither is missed.

- one management request per vhost for the queues' own totals
  (``disable_stats``/``enable_queue_totals``, which works where statistics are
  off): classic queues answer it live, ready and unacknowledged alike. A passive
  declare leaves unacknowledged messages out, and so does ``queue.delete if-empty``;
- a passive declare (one AMQP connection per vhost) for quorum queues and
  streams, whose totals lag, and for queues whose consumers count. A quorum
  queue reports unacknowledged messages as of its last tick, but counts every
  holder (a consumer, a ``basic.get`` poller holding results, a cancelled
  consumer not done acknowledging) among its consumers, exactly: one without
  consumers holds none;
- streams: a passive declare reads 0 for up to 4 s after a publish. A stream
  that reads 0 is read by two consumers that take nothing out of it, at offsets
  `first` and `last`: its count is the last offset minus the first plus one,
  right at once (a first message comes in about 15 ms). It counts as empty only
  when nothing arrives within ``EMPTY_AFTER`` seconds; reading stops after
  ``stream_wait`` seconds at most (publishers that never pause).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from provisioner.broker.amqp import Amqp, close_quietly
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.lazy import LazyModule
from provisioner.broker.management import Management
from provisioner.errors import BrokerError
from provisioner.plan import Held

if TYPE_CHECKING:
    import pika
    import pika.exceptions
else:  # imported on first use: a plan whose queues are all classic never opens an AMQP connection
    pika = LazyModule("pika", "exceptions")

STREAM_WAIT = 6.0  # seconds: the longest a stream's offsets are read
EMPTY_AFTER = 2.0  # seconds: a stream's first message reaches a consumer at `first` in about 15 ms
QUORUM_TICK = 7.0  # seconds: a quorum queue reports its totals once a tick (quorum_tick_interval, 5 s by default)


def read_held(
    endpoints: Endpoints,
    management: Management,
    vhost: str,
    names: Sequence[str],
    sizes: bool = False,
    consumers: Collection[str] = (),
    settle: Collection[str] | None = None,
    stream_wait: float = STREAM_WAIT,
    quorum_wait: float = QUORUM_TICK,
) -> dict[str, Held]:
    """What each named queue of a vhost holds (absent queues left out).

    One request for the totals; a passive declare only for quorum queues and
    streams (whose totals lag) and for the queues named in ``consumers`` (whose
    consumers are wanted: a queue to delete or replace). ``sizes`` adds message
    bytes. A quorum queue with holders (of those in ``settle``; None: all) is
    read again until its totals come from a tick after the first read
    (``_quorum_settled``); the others keep the unacknowledged count of the last tick.
    """
    if not names:
        return {}
    wanted = set(names)
    totals = {row["name"]: row for row in management.queue_totals(vhost) if row.get("name") in wanted}
    declared = [name for name in names if name in totals and (_type(totals[name]) != "classic" or name in consumers)]
    passive = Amqp(endpoints, vhost, management.backoff).queue_counts(declared) if declared else {}
    found = {
        name: _held(vhost, name, row, passive.get(name))
        for name, row in totals.items()
        if name in passive or _type(row) == "classic"  # a declared queue gone since the listing is left out
    }
    if sizes:
        bytes_of = _sizes(management, vhost, {name: held.ready for name, held in found.items()})
        found = {name: replace(held, bytes=bytes_of.get(name)) for name, held in found.items()}
    busy = {
        name: held
        for name, held in found.items()
        if held.type == "quorum" and held.consumers and (settle is None or name in settle)
    }
    if busy:
        found |= _quorum_settled(management, vhost, busy, totals, quorum_wait)
    empty_streams = {name: held for name, held in found.items() if held.type == "stream" and held.ready == 0}
    if empty_streams:
        found |= _streams_read(endpoints, management, vhost, empty_streams, stream_wait)
    return found


def _type(row: Mapping[str, Any]) -> str:
    return str(row.get("type") or "classic")


def _held(vhost: str, name: str, row: Mapping[str, Any], declared: tuple[int, int] | None) -> Held:
    """One queue's counts: a classic queue's totals are live, a passive declare is exact for the others."""
    queue_type, unacked = _type(row), int(row.get("messages_unacknowledged") or 0)
    ready, consumers = declared if declared is not None else (int(row.get("messages_ready") or 0), None)
    if queue_type == "quorum" and consumers == 0:
        unacked = 0  # no holder: a figure above 0 is from before the last holder let go
    if queue_type == "stream":
        unacked = 0  # reading a stream takes nothing out of it
    return Held(vhost, name, queue_type, ready, unacked, consumers)


def _sizes(management: Management, vhost: str, counted: Mapping[str, int]) -> dict[str, int]:
    """Message bytes from the statistics, for queues whose statistics are as recent as the exact count.

    The statistics lag their queue by up to an interval: a row whose message count
    is not the ready count just read (plus what its holders hold) says nothing sure
    about size, and the queue's size stays unknown.
    """
    sizes = {}
    for row in management.queue_totals(vhost, sizes=True):
        name = str(row.get("name"))
        if name not in counted or "message_bytes" not in row:
            continue
        if int(row.get("messages_ready") or 0) == counted[name]:
            sizes[name] = int(row["message_bytes"])
    return sizes


def _quorum_settled(
    management: Management, vhost: str, queues: dict[str, Held], first: Mapping[str, Mapping[str, Any]], wait: float
) -> dict[str, Held]:
    """Quorum queues with holders, their unacknowledged count from a tick after the first read.

    A row that differs from the first read comes from a later tick; one that
    never changes is taken after ``wait`` (a whole tick).
    """
    settled: dict[str, Held] = {}
    deadline = time.monotonic() + wait
    while True:
        rows = {row["name"]: row for row in management.queue_totals(vhost) if row.get("name") in queues}
        for name, held in queues.items():
            row = rows.get(name, {})
            if name not in settled and (row != first.get(name) or time.monotonic() >= deadline):
                settled[name] = replace(held, unacked=int(row.get("messages_unacknowledged") or 0))
        if len(settled) == len(queues):
            return settled
        time.sleep(0.5)


def _streams_read(
    endpoints: Endpoints, management: Management, vhost: str, streams: dict[str, Held], wait: float
) -> dict[str, Held]:
    """Streams that read empty, counted from their offsets: the first one, and the last one a consumer reaches."""
    connection = Amqp(endpoints, vhost, management.backoff).connect()
    try:
        offsets = _StreamOffsets(connection, list(streams))
        start = time.monotonic()
        while time.monotonic() - start < wait and not offsets.done(time.monotonic() - start):
            connection.process_data_events(time_limit=0.05)
        return {name: offsets.held(held) for name, held in streams.items()}
    except pika.exceptions.AMQPError as error:
        raise BrokerError(f"reading streams {sorted(streams)} in {vhost!r}: {error!r}") from error
    finally:
        close_quietly(connection)


class _StreamOffsets:
    """Consumers at offset `first` and `last` of each stream, never taking anything out of it.

    Each delivery carries its ``x-stream-offset``: the count is last - first + 1,
    right at once, where a passive declare still says 0.
    """

    QUIET = 0.3  # seconds without a delivery: the consumer at `last` reached the end

    def __init__(self, connection: pika.BlockingConnection, names: list[str]) -> None:
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.names, self.latest = names, 0.0
        firsts, lasts = connection.channel(), connection.channel()
        firsts.basic_qos(prefetch_count=1)
        lasts.basic_qos(prefetch_count=500)
        for name in names:
            firsts.basic_consume(name, self._on(name, self.first, None), arguments={"x-stream-offset": "first"})
            lasts.basic_consume(name, self._on(name, self.last, lasts), arguments={"x-stream-offset": "last"})

    def _on(self, name: str, found: dict[str, int], acking: Any) -> Any:
        def delivered(_channel: Any, method: Any, properties: Any, _body: bytes) -> None:
            offset = (properties.headers or {}).get("x-stream-offset")
            if isinstance(offset, int):
                found[name] = max(found.get(name, offset), offset) if acking is not None else found.get(name, offset)
            self.latest = time.monotonic()
            if acking is not None:
                acking.basic_ack(method.delivery_tag)  # credit for the rest of the last chunk; a stream keeps it

        return delivered

    def done(self, elapsed: float) -> bool:
        """Every stream has reached its end, or nothing came from any that has not within EMPTY_AFTER."""
        quiet = time.monotonic() - self.latest >= self.QUIET
        pending = [name for name in self.names if name not in self.first or name not in self.last]
        return quiet and (not pending or elapsed >= EMPTY_AFTER)

    def held(self, held: Held) -> Held:
        first, last = self.first.get(held.queue), self.last.get(held.queue)
        if first is not None and last is not None:
            return replace(held, ready=max(last - first + 1, held.ready))
        if first is not None or last is not None:
            return replace(held, ready=max(1, held.ready), sure=False)  # at least one
        return held  # nothing from its first offset: empty
