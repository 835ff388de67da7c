"""Replace a queue whose immutable properties changed without losing a message.

The migration moves through a temporary queue named ``{queue}.provisioner-migrate``:

1. declare the temporary queue (durable, no arguments: it can neither drop,
   expire nor dead-letter anything);
2. for each binding: bind the temporary queue, then unbind the old one, so
   publishing never stops and nothing is unroutable;
3. move every message from the old queue to the temporary one with publisher
   confirms (a message is acked at the source only once the target confirmed it);
4. delete the old queue once it is empty and unconsumed, declare it with the new
   properties;
5. move the bindings back, move the messages back, delete the temporary queue.

Nothing is remembered between steps but the broker's own state: each round
observes the two queues and :func:`next_steps` (pure) says what is left to do,
so re-running after a crash at any step finishes the job. The temporary queue's
existence is the marker of a migration in progress.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from provisioner.errors import BrokerError, UnsafeChange
from provisioner.topology.model import MIGRATE_SUFFIX, Binding, Queue, canonical_arguments

MAX_ROUNDS = 20  # a normal migration takes 5; more means something keeps undoing the work
LENGTH_LIMITS = ("x-max-length",)

log = logging.getLogger(__name__)


def temporary_name(queue: str) -> str:
    """The name of the temporary queue that marks a migration of ``queue`` in progress."""
    return f"{queue}{MIGRATE_SUFFIX}"


def is_migration_queue(name: str) -> bool:
    """Whether a live queue is a migration in progress: plan shows it, prune never deletes it."""
    return name.endswith(MIGRATE_SUFFIX)


@dataclass(frozen=True)
class LiveQueue:
    """What a migration needs to know about a live queue."""

    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    exclusive: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    messages: int = 0  # ready messages, counted over AMQP (never the management API's stale figure)
    consumers: int = 0

    def matches(self, target: Queue) -> bool:
        """Whether this queue already has the target's immutable properties."""
        return (self.type, self.durable, self.auto_delete, canonical_arguments(self.arguments)) == (
            target.type,
            target.durable,
            target.auto_delete,
            canonical_arguments(target.arguments),
        )


@dataclass(frozen=True)
class Observation:
    """The broker's state of one migration: the queue, the temporary queue, their bindings' union."""

    queue: LiveQueue | None
    temporary: LiveQueue | None
    bindings: tuple[Binding, ...] = ()  # destination set to the queue's name, default exchange excluded


# The step vocabulary: the executor dispatches on these, one small function each.
@dataclass(frozen=True)
class Declare:
    queue: Queue


@dataclass(frozen=True)
class Bind:
    binding: Binding


@dataclass(frozen=True)
class Unbind:
    binding: Binding


@dataclass(frozen=True)
class Move:
    source: str
    destination: str


@dataclass(frozen=True)
class Delete:
    queue: str
    quorum: bool  # quorum queues refuse if-empty: emptiness is checked by hand


Step = Declare | Bind | Unbind | Move | Delete


def temporary_queue(target: Queue, live: LiveQueue | None) -> Queue:
    """The temporary queue: durable, argument-free, quorum when either side is (keep replication)."""
    quorum = target.type == "quorum" or (live is not None and live.type == "quorum")
    return Queue(target.vhost, temporary_name(target.name), "quorum" if quorum else "classic")


def refusal(observation: Observation, target: Queue, allow_consumers: bool = False) -> str | None:
    """Why the next round must not run (the broker is left as it is, re-runnable), or None."""
    live = observation.queue
    if live is None or live.matches(target):
        return None  # nothing of the old queue is left to lose
    if observation.temporary is None and (reason := _refusal_to_start(live, target)):
        return reason
    if live.consumers and not allow_consumers:
        return (
            f"queue {target.name!r} has {live.consumers} consumer(s): messages they hold unacknowledged would be "
            "lost with the old queue; stop them (or pass --force) and re-run"
        )
    return None


def _refusal_to_start(live: LiveQueue, target: Queue) -> str | None:
    if "stream" in (live.type, target.type):
        return f"queue {target.name!r}: stream queues cannot be migrated (their messages are not consumed away)"
    if live.exclusive or not live.durable:
        return f"queue {target.name!r} is exclusive or transient: it belongs to a client, not to the topology"
    for name in LENGTH_LIMITS:
        limit = canonical_arguments(target.arguments).get(name)
        if isinstance(limit, int) and live.messages > limit:
            return f"queue {target.name!r} holds {live.messages} messages, more than the new {name} {limit} would keep"
    return None


def _moved(bindings: tuple[Binding, ...], source: str, destination: str) -> tuple[Step, ...]:
    """Bind the destination before unbinding the source, binding by binding: never unroutable."""
    steps: list[Step] = []
    for binding in bindings:
        steps += [Bind(replace(binding, destination=destination)), Unbind(replace(binding, destination=source))]
    return tuple(steps)


def next_steps(observation: Observation, target: Queue) -> tuple[Step, ...]:
    """The steps of the current phase, read from the broker's state alone; empty when done."""
    live, temporary = observation.queue, observation.temporary
    temp_name = temporary_name(target.name)
    if temporary is None:
        if live is None:
            return (Declare(target),)
        if live.matches(target):
            return ()
        return (Declare(temporary_queue(target, live)),)
    if live is None:
        return (Declare(target),)
    if not live.matches(target):
        return (
            *_moved(observation.bindings, target.name, temp_name),
            Move(target.name, temp_name),
            Delete(target.name, live.type == "quorum"),
        )
    return (
        *_moved(observation.bindings, temp_name, target.name),
        Move(temp_name, target.name),
        Delete(temp_name, temporary.type == "quorum"),
    )


class MigrationBroker(Protocol):
    """What a migration asks of the broker; every call is idempotent."""

    def observe(self, queue: str, temporary: str) -> Observation: ...
    def declare(self, queue: Queue) -> None: ...
    def bind(self, binding: Binding) -> None: ...
    def unbind(self, binding: Binding) -> None: ...
    def move(self, source: str, destination: str) -> int: ...
    def delete_if_empty(self, queue: str, quorum: bool) -> bool: ...


@dataclass
class MigrationReport:
    """What one run did: the steps taken and how many messages moved each way."""

    queue: str
    steps: list[Step] = field(default_factory=list)
    moved: int = 0


def _run_step(step: Step, broker: MigrationBroker, report: MigrationReport) -> bool:
    """Execute one step; False when the phase must be observed again (a queue was not yet empty)."""
    if isinstance(step, Declare):
        broker.declare(step.queue)
    elif isinstance(step, Bind):
        broker.bind(step.binding)
    elif isinstance(step, Unbind):
        broker.unbind(step.binding)
    elif isinstance(step, Move):
        report.moved += broker.move(step.source, step.destination)
    elif not broker.delete_if_empty(step.queue, step.quorum):
        return False
    report.steps.append(step)
    return True


def migrate_queue(
    target: Queue,
    broker: MigrationBroker,
    *,
    allow_consumers: bool = False,
    before_step: Callable[[Step], None] | None = None,
) -> MigrationReport:
    """Bring the live queue to ``target``'s properties, keeping every message; safe to re-run."""
    report = MigrationReport(target.name)
    temp_name = temporary_name(target.name)
    for _ in range(MAX_ROUNDS):
        observation = broker.observe(target.name, temp_name)
        steps = next_steps(observation, target)
        if not steps:
            return report
        if reason := refusal(observation, target, allow_consumers):
            raise UnsafeChange(reason)
        for step in steps:
            if before_step is not None:
                before_step(step)
            log.info("migrate %s: %s", target.name, step)
            if not _run_step(step, broker, report):
                break
    raise BrokerError(f"migration of queue {target.name!r} did not settle in {MAX_ROUNDS} rounds")
