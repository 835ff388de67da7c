"""The dlq commands as library calls: load nothing, print nothing; return what the CLI shows."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pika
import pika.exceptions

from provisioner.broker.amqp import Amqp, close_quietly
from provisioner.broker.endpoints import Endpoints, where
from provisioner.broker.retry import Backoff
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
def _connected(endpoints: Endpoints, vhost: str, backoff: Backoff) -> Iterator[pika.BlockingConnection]:
    connection = Amqp(endpoints, vhost, backoff).connect()
    try:
        yield connection
    except pika.exceptions.AMQPError as error:
        raise BrokerError(
            f"AMQP connection to {where(endpoints.amqp_url)} lost ({type(error).__name__}); "
            "every message is still in its queue or confirmed at its destination: run the command again"
        ) from error
    finally:
        close_quietly(connection)


def inventory(topology: Topology, endpoints: Endpoints, backoff: Backoff) -> list[Inventory]:
    """Every dead-letter queue with its exact count, oldest letter and most frequent failures."""
    found = []
    for queue in dead_letter_queues(topology):
        with _connected(endpoints, queue.vhost, backoff) as connection:
            count = broker.message_count(connection, queue)
            letters = broker.peek(connection, queue, min(count, SAMPLE)).seen if count else []
        found.append(Inventory(queue, count, oldest(letters), failures(letters)))
    return found


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
) -> ReplayReport:
    """Move the selected letters back where they came from (or to ``to``); with ``dry_run`` only say where."""
    queue = find_dead_letter_queue(topology, name)
    foreign = foreign_queues(topology)

    def decide(letter: Letter) -> Destination | str | None:
        if not selection.takes(letter):
            return None
        return destination(letter, foreign, to) or UNPLACED

    report = ReplayReport(queue)
    with _connected(endpoints, queue.vhost, backoff) as connection:
        count = broker.message_count(connection, queue)
        if started is not None:
            started(count)
        if dry_run:
            report.plan = _plan(connection, queue, broker.peek(connection, queue, count).seen, decide, limit)
            report.moved = sum(1 for move in report.plan if move.destination is not None)
            report.stayed = count - report.moved
            return report
        done = broker.run_pass(connection, queue, decide, limit=limit, progress=progress)
    report.moved, report.stayed, report.failed = done.moved, done.stayed, done.failed
    return report


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
