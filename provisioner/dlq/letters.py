"""Pure: the dead-letter queues of a topology, what a dead letter says, and where it goes back."""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.topology.model import Topology

PREVIEW_BYTES = 200  # of a body shown by `dlq show`


class NotADeadLetterQueue(ProvisionerError):
    """The queue named is not a dead-letter queue of the topology (a work queue, or unknown)."""


@dataclass(frozen=True)
class DeadLetterQueue:
    """A dead-letter queue of the topology and the queues whose failures it receives."""

    vhost: str
    name: str
    sources: tuple[str, ...]
    quorum: bool  # returning a message to a quorum queue counts as a delivery: never peek by requeue


@dataclass(frozen=True)
class Death:
    """One entry of the broker's ``x-death`` header."""

    reason: str
    queue: str
    exchange: str
    routing_keys: tuple[str, ...]
    count: int
    time: datetime.datetime | None


@dataclass(frozen=True)
class Destination:
    """Where a dead letter goes back: an exchange and routing key, and why there."""

    exchange: str
    routing_key: str
    why: str  # x-failed-queue | foreign-queue | x-death | --to

    def describe(self) -> str:
        if self.exchange == "":
            return f"queue {self.routing_key!r}"
        return f"exchange {self.exchange!r} key {self.routing_key!r}"


@dataclass(frozen=True)
class Letter:
    """One message of a dead-letter queue, read: its properties, headers and body."""

    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    timestamp: int | None = None  # the publisher's timestamp property, seconds

    @property
    def task(self) -> str | None:
        """The Celery task: our runtime's x-failed-task, else the protocol-2 ``task`` header."""
        value = self.headers.get("x-failed-task") or self.headers.get("task")
        return _text(value) if value else None

    @property
    def exception(self) -> str | None:
        value = self.headers.get("x-exception")
        return _text(value) if value else None

    @property
    def exception_type(self) -> str | None:
        """``ValueError`` of ``ValueError: cannot process 2``; for a broker dead-letter its reason."""
        if self.exception:
            return self.exception.split(":", 1)[0].strip()
        deaths = self.deaths
        return f"x-death:{deaths[0].reason}" if deaths else None

    @property
    def deaths(self) -> tuple[Death, ...]:
        return tuple(_death(entry) for entry in self.headers.get("x-death") or () if isinstance(entry, Mapping))

    def failed_at(self) -> datetime.datetime | None:
        """When it was dead-lettered: our runtime's x-failed-at, else the newest x-death time, else its timestamp."""
        recorded = self.headers.get("x-failed-at")
        if recorded:
            try:
                return datetime.datetime.fromisoformat(_text(recorded))
            except ValueError:
                pass
        times = [d.time for d in self.deaths if d.time is not None]
        if times:
            return max(times)
        if self.timestamp:
            return datetime.datetime.fromtimestamp(self.timestamp, datetime.timezone.utc)
        return None

    def preview(self, limit: int = PREVIEW_BYTES) -> str:
        """The body as text, cut at ``limit`` bytes; binary bodies as a note, never as garbage."""
        head = self.body[:limit]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as error:
            if error.start < len(head) - 3 or len(self.body) <= limit:  # not just a character cut in half
                return f"<binary, {len(self.body)} bytes>"
            text = head[: error.start].decode("utf-8")
        if any(not ch.isprintable() and ch not in "\n\t\r" for ch in text):
            return f"<binary, {len(self.body)} bytes>"
        cut = f"... ({len(self.body)} bytes)" if len(self.body) > limit else ""
        return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + cut


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _death(entry: Mapping[str, Any]) -> Death:
    when = entry.get("time")
    if isinstance(when, datetime.datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)  # AMQP timestamps are UTC seconds
    return Death(
        reason=_text(entry.get("reason", "")),
        queue=_text(entry.get("queue", "")),
        exchange=_text(entry.get("exchange", "")),
        routing_keys=tuple(_text(key) for key in entry.get("routing-keys") or ()),
        count=int(entry.get("count") or 0),
        time=when if isinstance(when, datetime.datetime) else None,
    )


def dead_letter_queues(topology: Topology) -> tuple[DeadLetterQueue, ...]:
    """Every dead-letter queue of the topology with its source queues, sorted by vhost and name."""
    sources: dict[tuple[str, str], list[str]] = {}
    for dead_letter in topology.dead_letters:
        sources.setdefault((dead_letter.vhost, dead_letter.dead_letter_queue), []).append(dead_letter.queue)
    found = []
    for (vhost, name), queues in sorted(sources.items()):
        queue = topology.queue(vhost, name)
        found.append(DeadLetterQueue(vhost, name, tuple(sorted(queues)), queue is not None and queue.type == "quorum"))
    return tuple(found)


def find_dead_letter_queue(topology: Topology, name: str) -> DeadLetterQueue:
    """The dead-letter queue of that name; refuse a work queue or an unknown name in one line."""
    matches = [queue for queue in dead_letter_queues(topology) if queue.name == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        vhosts = ", ".join(repr(m.vhost) for m in matches)
        raise NotADeadLetterQueue(f"queue {name!r} is a dead-letter queue in several vhosts ({vhosts})")
    if any(queue.name == name for queue in topology.queues):
        raise NotADeadLetterQueue(f"queue {name!r} is not a dead-letter queue of the topology (a work queue)")
    known = ", ".join(q.name for q in dead_letter_queues(topology)) or "none"
    raise NotADeadLetterQueue(f"queue {name!r} is not a dead-letter queue of the topology (those are: {known})")


def foreign_queues(topology: Topology) -> frozenset[str]:
    """Queues whose messages are not Celery's (``consume: foreign``)."""
    return frozenset(route.queue for route in topology.tasks if route.consume == "foreign")


def destination(letter: Letter, foreign: Iterable[str] = (), to: str | None = None) -> Destination | None:
    """Where a dead letter goes back; None when nothing in it says so (then only --to can place it).

    A failed task of our runtime goes to its ``x-failed-queue``; a message the
    broker dead-lettered goes back to the queue it died in (its newest ``x-death``
    entry's queue), through the default exchange: never to the other queues bound
    to the exchange it was first published to, which had their copy already.
    """
    if to is not None:
        return Destination("", to, "--to")
    failed_queue = letter.headers.get("x-failed-queue")
    if failed_queue:
        return Destination("", _text(failed_queue), "x-failed-queue")
    deaths = letter.deaths
    if not deaths:
        return None
    death = deaths[0]
    if not death.queue:
        return None
    return Destination("", death.queue, "foreign-queue" if death.queue in set(foreign) else "x-death")


@dataclass(frozen=True)
class Selection:
    """Which dead letters a replay takes: by task name and exception type (either may be None: any)."""

    task: str | None = None
    exception: str | None = None

    def takes(self, letter: Letter) -> bool:
        if self.task is not None and letter.task != self.task:
            return False
        return self.exception is None or letter.exception_type == self.exception


def failures(letters: Iterable[Letter], top: int = 3) -> list[tuple[str, str, int]]:
    """The most frequent (task, exception type, count), most frequent first, then by name."""
    counted = Counter((letter.task or "-", letter.exception_type or "-") for letter in letters)
    return sorted(((t, e, n) for (t, e), n in counted.items()), key=lambda row: (-row[2], row[0], row[1]))[:top]


def oldest(letters: Iterable[Letter]) -> datetime.datetime | None:
    times = [t for t in (letter.failed_at() for letter in letters) if t is not None]
    return min(times) if times else None
