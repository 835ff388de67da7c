"""Replace a queue whose immutable properties changed without losing a message.

The migration moves through a temporary queue named ``{queue}.provisioner-migrate``:

0. probe: declare a throwaway queue with the new properties, check the broker
   keeps them, delete it; a declaration the broker refuses (or changes) stops
   the migration before the old queue is touched;
1. declare the temporary queue (durable, no arguments), guarded by a policy of
   our own (parking.py) so no policy of anyone's can limit, expire or drop what
   it parks; a message whose own expiration passes there is dead-lettered as in
   its own queue;
2. for each binding: bind the temporary queue, then unbind the old one, so
   publishing never stops and nothing is unroutable;
3. move every message from the old queue to the temporary one with publisher
   confirms (a message is acked at the source only once the target confirmed it);
4. swap: when a basic.get finds the old queue empty, delete it (if-empty) and
   declare it with the new properties in the same breath (pipelined on one
   channel), so publishers that address it directly, through the default
   exchange, lose no time with nowhere to go and cannot keep the move busy;
5. move the bindings back, move the messages back, delete the temporary queue.

Nothing is remembered between steps but the broker's own state: each round
observes the two queues and :func:`next_steps` (pure) says what is left to do,
so re-running after a crash at any step finishes the job. The temporary queue's
existence is the marker of a migration in progress: plan shows it as a change
of its queue, whatever state that queue is in, until a migration finishes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from provisioner.errors import BrokerError, UnsafeChange
from provisioner.limits import breach, effective_limits
from provisioner.migration import (  # noqa: F401  # re-exported: the names callers used before the move
    MAX_NAME_BYTES,
    is_migration_queue,
    original_name,
    suffixed,
    temporary_name,
)
from provisioner.migration.parking import divertible
from provisioner.topology.model import PROBE_SUFFIX, Binding, Queue, canonical_arguments

MAX_ROUNDS = 20  # a normal migration takes 5; more means something keeps undoing the work
PROBE_EXPIRES_MS = 60_000  # a probe left behind by a killed apply deletes itself

log = logging.getLogger(__name__)


def probe_queue(target: Queue) -> Queue:
    """The throwaway queue that tries the target's declaration (expiring unless the target sets x-expires)."""
    return replace(
        target, name=suffixed(target.name, PROBE_SUFFIX), arguments={"x-expires": PROBE_EXPIRES_MS, **target.arguments}
    )


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
    message_bytes: int | None = 0  # the management API's figure (it lags; None: the broker keeps no statistics)
    policy: dict[str, Any] = field(default_factory=dict)  # the effective policy definition

    def matches(self, target: Queue) -> bool:
        """Whether this queue already has the target's immutable properties."""
        return (self.type, self.durable, self.auto_delete, canonical_arguments(self.arguments)) == (
            target.type,
            target.durable,
            target.auto_delete,
            canonical_arguments(target.arguments),
        )

    def describe(self) -> str:
        """The properties a migration compares, as a person reads them."""
        return _properties(self.type, self.durable, self.auto_delete, self.arguments)


def _properties(type_: str, durable: bool, auto_delete: bool, arguments: dict[str, Any]) -> str:
    flags = [type_] + (["auto_delete"] if auto_delete else []) + ([] if durable else ["transient"])
    return ", ".join(flags + [f"{k}={v}" for k, v in canonical_arguments(arguments).items()])


@dataclass(frozen=True)
class Observation:
    """The broker's state of one migration: the queue, the temporary queue, their bindings' union."""

    queue: LiveQueue | None
    temporary: LiveQueue | None
    bindings: tuple[Binding, ...] = ()  # destination set to the queue's name, default exchange excluded


# The step vocabulary: the executor dispatches on these, one small function each.
@dataclass(frozen=True)
class Probe:
    queue: Queue  # declared, read back and deleted: the target's properties under a throwaway name


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


@dataclass(frozen=True)
class Swap:
    """Delete the old queue the moment it is seen empty and declare the new one at once."""

    queue: Queue  # the new properties
    quorum: bool  # whether the old queue is a quorum queue (no if-empty)
    temporary: str  # where a message that arrives meanwhile is moved
    divert: bool = False  # whether a policy may send what arrives meanwhile to the temporary queue (parking.py)


Step = Probe | Declare | Bind | Unbind | Move | Delete | Swap


def temporary_queue(target: Queue, live: LiveQueue | None) -> Queue:
    """The temporary queue: durable, argument-free, quorum when either side is (keep replication)."""
    quorum = target.type == "quorum" or (live is not None and live.type == "quorum")
    return Queue(target.vhost, temporary_name(target.name), "quorum" if quorum else "classic")


def refusal(observation: Observation, target: Queue, allow_consumers: bool = False, force: bool = False) -> str | None:
    """Why the next round must not run (the broker is left as it is, re-runnable), or None."""
    live, temporary = observation.queue, observation.temporary
    if temporary is not None and temporary.consumers:
        return (
            f"the temporary queue {temporary.name!r} has {temporary.consumers} consumer(s), so it can never be "
            f"deleted; stop them and re-run"
        )
    if live is None or live.matches(target):
        return None  # nothing of the old queue is left to lose
    if observation.temporary is None and (reason := _refusal_to_start(live, target, force)):
        return reason
    if live.consumers and not allow_consumers:
        return (
            f"queue {target.name!r} has {live.consumers} consumer(s): messages they hold unacknowledged would be "
            "lost with the old queue; stop them (or pass --force) and re-run"
        )
    return None


def _refusal_to_start(live: LiveQueue, target: Queue, force: bool) -> str | None:
    if "stream" in (live.type, target.type):
        return f"queue {target.name!r}: stream queues cannot be migrated (their messages are not consumed away)"
    if live.exclusive:
        return f"queue {target.name!r} is exclusive: it belongs to a client connection, not to the topology"
    if force:
        return None
    limits = effective_limits(canonical_arguments(target.arguments), live.policy)
    reason = breach(target.name, limits, live.messages, live.message_bytes)
    return f"{reason}; nothing was moved (--force migrates anyway)" if reason else None


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
        return (Probe(probe_queue(target)), Declare(temporary_queue(target, live)))
    if live is None:
        return (Declare(target),)
    if not live.matches(target):
        return (
            Probe(probe_queue(target)),  # again: the old queue is deleted in this phase
            *_moved(observation.bindings, target.name, temp_name),
            Move(target.name, temp_name),
            Swap(
                target,
                live.type == "quorum",
                temp_name,
                divertible(target.type, (live.arguments, canonical_arguments(target.arguments))),
            ),
        )
    return (
        *_moved(observation.bindings, temp_name, target.name),
        Move(temp_name, target.name),
        Delete(temp_name, temporary.type == "quorum"),
    )


class MigrationBroker(Protocol):
    """What a migration asks of the broker; every call is idempotent."""

    def observe(self, queue: str, temporary: str) -> Observation: ...
    def probe(self, queue: Queue) -> LiveQueue: ...
    def declare(self, queue: Queue) -> None: ...
    def bind(self, binding: Binding) -> None: ...
    def unbind(self, binding: Binding) -> None: ...
    def move(self, source: str, destination: str) -> int: ...
    def delete_if_empty(self, queue: str, quorum: bool) -> bool: ...
    def swap(self, step: Swap) -> bool: ...


class MigrationStopped(BrokerError):
    """A migration stopped half-way; the message says where the messages are and what to run."""


@dataclass
class MigrationReport:
    """What one run did: the steps taken, messages parked in the temporary queue and brought back."""

    queue: str
    steps: list[Step] = field(default_factory=list)
    parked: int = 0  # moved from the old queue into the temporary one
    restored: int = 0  # moved from the temporary queue into the new one: the messages migrated
    cancelled: int = 0  # consumers of the old queue (--force) the swap cancelled: they must reconnect

    @property
    def moves(self) -> int:
        """Every message copy made (each message of a full migration moves twice)."""
        return self.parked + self.restored


def _probe(step: Probe, broker: MigrationBroker, report: MigrationReport) -> bool:
    kept = broker.probe(step.queue)
    if not kept.matches(step.queue):
        wanted = step.queue
        raise UnsafeChange(
            f"queue {wanted.name[: -len(PROBE_SUFFIX)]!r}: the broker turns a queue declared as "
            f"{_properties(wanted.type, wanted.durable, wanted.auto_delete, wanted.arguments)} into "
            f"{kept.describe()} (the vhost's default queue type?); the old queue was not touched"
        )
    return True


def _declare(step: Declare, broker: MigrationBroker, report: MigrationReport) -> bool:
    broker.declare(step.queue)
    return True


def _bind(step: Bind, broker: MigrationBroker, report: MigrationReport) -> bool:
    broker.bind(step.binding)
    return True


def _unbind(step: Unbind, broker: MigrationBroker, report: MigrationReport) -> bool:
    broker.unbind(step.binding)
    return True


def _move(step: Move, broker: MigrationBroker, report: MigrationReport) -> bool:
    moved = broker.move(step.source, step.destination)
    if is_migration_queue(step.source):
        report.restored += moved
    else:
        report.parked += moved
    return True


def _delete(step: Delete, broker: MigrationBroker, report: MigrationReport) -> bool:
    return broker.delete_if_empty(step.queue, step.quorum)  # False: not yet empty, observe again


def _swap(step: Swap, broker: MigrationBroker, report: MigrationReport) -> bool:
    return broker.swap(step)  # False: publishers kept it from being seen empty, move and try again


# One small function per step; each returns False when the phase must be observed again.
RUNNERS: dict[type, Callable[[Any, MigrationBroker, MigrationReport], bool]] = {
    Probe: _probe,
    Declare: _declare,
    Bind: _bind,
    Unbind: _unbind,
    Move: _move,
    Delete: _delete,
    Swap: _swap,
}


def where_messages_are(observation: Observation, target: Queue, done: list[Step]) -> str:
    """Where the queue's messages are after the steps done since ``observation``, and what to run."""
    temp_name = temporary_name(target.name)
    deleted = {step.queue for step in done if isinstance(step, Delete)}
    declared_now = {step.queue.name for step in done if isinstance(step, Swap)}
    declared = {step.queue.name for step in done if isinstance(step, Declare)} | declared_now
    queue_there = (observation.queue is not None or target.name in declared) and target.name not in deleted
    temporary_there = (observation.temporary is not None or temp_name in declared) and temp_name not in deleted
    if queue_there and temporary_there:
        place = f"its messages are in {target.name!r} and in {temp_name!r}"
    elif temporary_there:
        place = f"its messages wait in {temp_name!r} ({target.name!r} does not exist now)"
    else:
        place = f"its messages are in {target.name!r}"
    return f"{place}; fix the cause and run `provision apply --migrate` again to finish"


def _run_round(
    steps: tuple[Step, ...],
    observation: Observation,
    target: Queue,
    broker: MigrationBroker,
    report: MigrationReport,
    before_step: Callable[[Step], None] | None,
) -> None:
    """Run one phase's steps; a broker fault stops the migration with where the messages are."""
    done: list[Step] = []
    for step in steps:
        if before_step is not None:
            before_step(step)
        log.info("migrate %s: %s", target.name, step)
        try:
            if not RUNNERS[type(step)](step, broker, report):
                return
        except UnsafeChange:
            raise
        except Exception as error:  # its cause still decides whether the run is retried (broker.retry)
            raise MigrationStopped(
                f"migration of queue {target.name!r} stopped: {error}; {where_messages_are(observation, target, done)}"
            ) from error
        done.append(step)
        report.steps.append(step)


def migrate_queue(
    target: Queue,
    broker: MigrationBroker,
    *,
    allow_consumers: bool = False,
    before_step: Callable[[Step], None] | None = None,
    force: bool = False,
) -> MigrationReport:
    """Bring the live queue to ``target``'s properties, keeping every message; safe to re-run."""
    report = MigrationReport(target.name)
    temp_name = temporary_name(target.name)
    for _ in range(MAX_ROUNDS):
        observation = broker.observe(target.name, temp_name)
        live = observation.queue
        if live is not None and not live.matches(target) and Declare(target) in report.steps:
            # the probe passed, yet the broker changed the declaration: stop rather than loop
            raise MigrationStopped(
                f"migration of queue {target.name!r} stopped: the broker holds it as {live.describe()} although it "
                f"was declared with the new properties; {where_messages_are(observation, target, [])}"
            )
        steps = next_steps(observation, target)
        if not steps:
            return report
        if reason := refusal(observation, target, allow_consumers, force):
            raise UnsafeChange(reason)
        if live is not None and live.consumers and any(isinstance(step, Swap) for step in steps):
            report.cancelled = max(report.cancelled, live.consumers)
        _run_round(steps, observation, target, broker, report, before_step)
    raise MigrationStopped(
        f"migration of queue {target.name!r} did not settle in {MAX_ROUNDS} rounds (something keeps changing it); "
        f"{where_messages_are(broker.observe(target.name, temp_name), target, [])}"
    )
