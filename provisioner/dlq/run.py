"""The dlq commands as library calls: load nothing, print nothing; return what the CLI shows."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pika
import pika.exceptions

from provisioner.broker.amqp import Amqp, close_quietly, open_connection
from provisioner.broker.connect import drop_socket
from provisioner.broker.endpoints import Endpoints, where
from provisioner.broker.management import Management, ManagementError
from provisioner.broker.mover import bounded, stall_seconds
from provisioner.broker.pump import MoveStalled
from provisioner.broker.retry import Backoff
from provisioner.broker.shovel import BrokerShovel
from provisioner.dlq import broker
from provisioner.dlq.letters import (
    DeadLetterQueue,
    Destination,
    Letter,
    Selection,
    dead_letter_queues,
    destination,
    failures,
    find_dead_letter_queue,
    foreign_queues,
    oldest,
)
from provisioner.errors import BrokerError
from provisioner.topology.model import Topology

UNPLACED = "nothing in the message says where it came from (use --to QUEUE)"
SAMPLE = 1000  # messages `dlq list` reads per queue for its failure counts and oldest age


@dataclass(frozen=True)
class Inventory:
    """One dead-letter queue as `dlq list` shows it."""

    queue: DeadLetterQueue
    messages: int
    oldest: datetime.datetime | None
    failures: list[tuple[str, str, int]]


@dataclass(frozen=True)
class Move:
    """Where one letter of a replay goes (None: it stays, with the reason)."""

    position: int
    letter: Letter
    destination: Destination | None
    reason: str = ""


@dataclass
class ReplayReport:
    queue: DeadLetterQueue
    moved: int = 0
    stayed: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    plan: list[Move] = field(default_factory=list)  # --dry-run only


@contextmanager
def _connected(
    endpoints: Endpoints, vhost: str, backoff: Backoff, moving: str | None = None
) -> Iterator[pika.BlockingConnection]:
    """A connection to the vhost; ``moving``: a queue whose letters move, on a connection an alarm cannot hang.

    The broker stops reading a blocked connection (an alarm) without a word
    once it has published: a passive declare sent in that instant would wait
    for ever, so a moving connection gives up after the stall time instead.
    """
    if moving is None:
        connection = Amqp(endpoints, vhost, backoff).connect()
    else:
        stall = stall_seconds(backoff)
        connection = open_connection(bounded(endpoints.amqp_parameters(vhost), stall), backoff)
    end = close_quietly
    try:
        yield connection
    except MoveStalled:
        end = drop_socket  # a blocked connection (an alarm) or a silent node never answers a polite close
        raise
    except pika.exceptions.ConnectionBlockedTimeout as error:
        end = drop_socket
        raise MoveStalled(
            f"the broker blocked the connection for {stall_seconds(backoff):.0f} s: a memory or disk alarm "
            f"(rabbitmqctl status shows which) blocks publishing; every letter not yet moved is still in {moving!r}: "
            "run the command again once the alarm is cleared"
        ) from error
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as error:
        raise BrokerError(f"the broker refused: {error.reply_code} {error.reply_text}") from error
    except pika.exceptions.AMQPError as error:
        raise BrokerError(
            f"AMQP connection to {where(endpoints.amqp_url)} lost ({type(error).__name__}); "
            "every message is still in its queue or confirmed at its destination: run the command again"
        ) from error
    finally:
        end(connection)


def inventory(topology: Topology, endpoints: Endpoints, backoff: Backoff) -> list[Inventory]:
    """Every dead-letter queue with its exact count, oldest letter and most frequent failures.

    One connection per vhost: every queue counted by passive declares pipelined
    on a few channels (broker/passive.py), then the first letters read of those
    that hold any (8,000 queues took a connection each, then a round trip each).
    """
    queues = dead_letter_queues(topology)
    by_vhost: dict[str, list[DeadLetterQueue]] = {}
    for queue in queues:
        by_vhost.setdefault(queue.vhost, []).append(queue)
    found: dict[tuple[str, str], Inventory] = {}
    for vhost, held in by_vhost.items():
        with _connected(endpoints, vhost, backoff) as connection:
            counts = broker.message_counts(connection, held)
            for queue in held:
                count = counts[queue.name]
                seen = broker.peek(connection, queue, min(count, SAMPLE)).seen if count else []
                found[(vhost, queue.name)] = Inventory(queue, count, oldest(seen), failures(seen))
    return [found[(queue.vhost, queue.name)] for queue in queues]


def show(
    topology: Topology, name: str, limit: int, endpoints: Endpoints, backoff: Backoff
) -> tuple[DeadLetterQueue, int, list[tuple[Letter, Destination | None]]]:
    """The queue, its exact count and its first ``limit`` letters with where each would go back."""
    queue = find_dead_letter_queue(topology, name)
    foreign = foreign_queues(topology)
    with _connected(endpoints, queue.vhost, backoff) as connection:
        count = broker.message_count(connection, queue)
        letters = broker.peek(connection, queue, min(limit, count)).seen if count and limit else []
    return queue, count, [(letter, destination(letter, foreign)) for letter in letters]


def replay(
    topology: Topology,
    name: str,
    endpoints: Endpoints,
    backoff: Backoff,
    *,
    selection: Selection,
    limit: int | None = None,
    to: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
    management: Management | None = None,
) -> ReplayReport:
    """Move the selected letters back where they came from (or to ``to``); with ``dry_run`` only say where.

    With ``management``, the user's permissions are checked before anything
    moves, and a replay of every letter to one queue (``to``, or the one queue
    the dead-letter queue serves) runs on the broker's shovel where it is on.
    """
    queue = find_dead_letter_queue(topology, name)
    foreign = foreign_queues(topology)

    def decide(letter: Letter) -> Destination | str | None:
        if not selection.takes(letter):
            return None
        return destination(letter, foreign, to) or UNPLACED

    report = ReplayReport(queue)
    with _connected(endpoints, queue.vhost, backoff, moving=None if dry_run else queue.name) as connection:
        count = broker.message_count(connection, queue)
        if started is not None:
            started(count)
        if dry_run:
            report.plan = _plan(connection, queue, broker.peek(connection, queue, count).seen, decide, limit)
            report.moved = sum(1 for move in report.plan if move.destination is not None)
            report.stayed = count - report.moved
            return report
        if management is not None:
            refused_permission(management, endpoints.amqp_user, queue)
        whole = _whole_queue_destination(queue, selection, limit, to)
        if management is not None and whole is not None and count:
            moved = _shovel_replay(connection, management, queue, whole, stall_seconds(backoff))
            if moved is not None:
                report.moved, report.stayed = moved, broker.message_count(connection, queue)
                return report
        done = broker.run_pass(
            connection,
            queue,
            decide,
            limit=limit,
            progress=progress,
            user=endpoints.amqp_user,
            stall_seconds=stall_seconds(backoff),
        )
    report.moved, report.stayed, report.failed = done.moved, done.stayed, done.failed
    return report


def _whole_queue_destination(
    queue: DeadLetterQueue, selection: Selection, limit: int | None, to: str | None
) -> str | None:
    """The one queue every letter goes back to, when the replay takes them all; else None."""
    if selection != Selection() or limit is not None:
        return None
    if to is not None:
        return to
    return queue.sources[0] if len(queue.sources) == 1 else None


def _shovel_replay(
    connection: pika.BlockingConnection, management: Management, queue: DeadLetterQueue, to: str, stall: float
) -> int | None:
    """Every letter to ``to`` by the broker's shovel; how many moved, None when the broker has no shovel plugin."""
    problem = broker.Targets(connection).problem(Destination("", to, "--to"))
    if problem is not None:
        raise BrokerError(f"nothing was replayed: {problem}")
    shovel = BrokerShovel(management, queue.vhost)
    before = broker.message_count(connection, queue)

    def count() -> int:
        return broker.message_count(connection, queue)

    if not shovel.start(queue.name, to):
        return None
    shovel.wait(queue.name, count, stall)
    return before - count() if before >= count() else before


def refused_permission(management: Management, user: str, queue: DeadLetterQueue) -> None:
    """Refuse in one line, before anything moves, a replay the user's permissions would stop half-way."""
    try:
        granted = management.permissions(queue.vhost, user)
    except ManagementError:
        return  # a user who may not read permissions: the broker's own refusal will name it
    if granted is None:
        raise BrokerError(f"user {user!r} has no permissions in vhost {queue.vhost!r}; nothing was replayed")
    for kind, resource, what in (
        ("read", queue.name, f"queue {queue.name!r}"),
        ("write", "amq.default", "the default exchange (replay publishes through it)"),
    ):
        pattern = str(granted.get(kind) or "")
        if not _permits(pattern, resource):
            raise BrokerError(
                f"user {user!r} may not {kind} {what} in vhost {queue.vhost!r} (its {kind} permission is "
                f"{pattern!r}: the broker would refuse with 403 ACCESS_REFUSED); nothing was replayed"
            )


def _permits(pattern: str, resource: str) -> bool:
    """Whether a permission pattern grants a resource, as the broker reads it ('' grants nothing)."""
    if pattern == "":
        return False
    try:
        return re.search(pattern, resource) is not None
    except re.error:
        return True  # a pattern Python cannot read: the broker decides


def _plan(
    connection: pika.BlockingConnection,
    queue: DeadLetterQueue,
    letters: list[Letter],
    decide: Callable[[Letter], Destination | str | None],
    limit: int | None,
) -> list[Move]:
    """What a replay would do with each letter, checking that each destination exists."""
    targets = broker.Targets(connection)
    moves: list[Move] = []
    taken = 0
    for position, letter in enumerate(letters, 1):
        chosen = decide(letter) if limit is None or taken < limit else None
        if chosen is None:
            moves.append(Move(position, letter, None, "not selected" if limit is None or taken < limit else "--limit"))
            continue
        problem = chosen if isinstance(chosen, str) else targets.problem(chosen)
        if problem is not None:
            moves.append(Move(position, letter, None, problem))
            continue
        taken += 1
        moves.append(Move(position, letter, chosen if isinstance(chosen, Destination) else None))
    return moves


def purge(topology: Topology, name: str, endpoints: Endpoints, backoff: Backoff) -> tuple[DeadLetterQueue, int]:
    """Delete the messages of a dead-letter queue (never a work queue's); how many."""
    queue = find_dead_letter_queue(topology, name)
    with _connected(endpoints, queue.vhost, backoff) as connection:
        return queue, broker.purge(connection, queue)
