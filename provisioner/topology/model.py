"""The expanded topology: plain frozen dataclasses that plan, apply and render all read.

Identity (``key``, used for ``__hash__`` and for diffing) is separate from
equality (every broker-visible field). Shorthands such as ``dead_letter: true``
and friendly queue fields are gone by the time objects reach this module's
types: what is here is what the broker should hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from provisioner.topology.accounts import AccountResource, Accounts
from provisioner.topology.arguments import BY_POLICY_KEY, QUEUE_ARGUMENTS, parse_integer

Key = tuple[str, ...]

# Names the provisioner keeps for its own objects; a topology may not use them.
LOCK_QUEUE = "provisioner.lock"  # the apply lock (provisioner.broker.lock)
MIGRATE_SUFFIX = ".provisioner-migrate"  # a migration's temporary queue (migration/steps.py)
MIGRATE_POLICY_PREFIX = "provisioner-migrate-"  # guards a temporary queue (migration/parking.py)
PROBE_SUFFIX = ".provisioner-probe"  # a migration's trial declaration, deleted at once (migration/steps.py)

# The broker's built-in exchanges a binding may name, and their types.
BUILT_IN_EXCHANGE_TYPES = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
    "amq.rabbitmq.trace": "topic",
}

# Friendly queue fields and the x-argument each stands for (as kombu's table does), from the one table.
QUEUE_ARGUMENT_NAMES: dict[str, str] = {a.friendly: a.name for a in QUEUE_ARGUMENTS.values() if a.friendly}

# x-arguments whose value is an integer or a boolean; the broker may hand them back as strings.
INTEGER_ARGUMENTS = frozenset(a.name for a in QUEUE_ARGUMENTS.values() if a.kind == "int")
BOOLEAN_ARGUMENTS = frozenset(a.name for a in QUEUE_ARGUMENTS.values() if a.kind == "bool")


def canonical_arguments(arguments: dict[str, Any] | None) -> dict[str, Any]:
    """Return arguments in the one form both the file and the live broker are compared in.

    ``x-queue-type`` is dropped (it is the queue's ``type`` field), integer
    arguments given as decimal strings become ints, keys are sorted. Values that
    are not what the argument takes stay as they are, for validation to report.
    """
    if not arguments:
        return {}
    result: dict[str, Any] = {}
    for name in sorted(arguments):
        value = arguments[name]
        if name == "x-queue-type":
            continue
        if name in INTEGER_ARGUMENTS and isinstance(value, str) and parse_integer(value) is not None:
            value = parse_integer(value)
        elif name in INTEGER_ARGUMENTS and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif name in BOOLEAN_ARGUMENTS and isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        result[name] = value
    return result


def canonical_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """A policy definition as the broker takes it: an integer key written as a decimal string ("42") is an int.

    The broker's policy validators refuse "42" where they take 42; a topology may write either, as for arguments.
    """
    result = dict(definition)
    for key, value in definition.items():
        argument = BY_POLICY_KEY.get(key)
        if argument is not None and argument.kind == "int" and isinstance(value, str):
            number = parse_integer(value)
            if number is not None:
                result[key] = number
    return result


def arguments_text(arguments: dict[str, Any]) -> str:
    """Stable text of an argument table, used in binding keys and plan output."""
    if not arguments:
        return "{}"
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class VHost:
    """A virtual host the topology manages."""

    name: str
    kind: ClassVar[str] = "vhost"

    @property
    def key(self) -> Key:
        return (self.kind, self.name)

    @property
    def vhost(self) -> str:
        return self.name

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True, slots=True)  # no __dict__: a topology holds hundreds of thousands
class Exchange:
    """An exchange as the broker holds it. Everything but the name is immutable on the broker."""

    vhost: str
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "exchange"

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.name)

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True, slots=True)  # no __dict__: a topology holds hundreds of thousands
class Queue:
    """A queue as the broker holds it; ``arguments`` never holds ``x-queue-type``."""

    vhost: str
    name: str
    type: str = "classic"
    durable: bool = True
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "queue"

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.name)

    @property
    def declare_arguments(self) -> dict[str, Any]:
        """The arguments to declare with: the stored ones plus ``x-queue-type``, always.

        Classic too: a vhost whose default queue type is quorum turns a queue
        declared without ``x-queue-type`` into a quorum queue. The broker accepts
        ``x-queue-type: classic`` on a classic queue first declared without it.
        """
        return {**self.arguments, "x-queue-type": self.type}

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True, slots=True)  # no __dict__: a topology holds hundreds of thousands
class Binding:
    """A binding is a resource of its own; its whole content is its identity."""

    vhost: str
    source: str
    destination: str
    destination_type: str = "queue"  # "queue" or "exchange"
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "binding"

    @property
    def key(self) -> Key:
        return (
            self.kind,
            self.vhost,
            self.source,
            self.destination_type,
            self.destination,
            self.routing_key,
            arguments_text(self.arguments),
        )

    @property
    def name(self) -> str:
        """A readable name for plans: ``source -> queue:dest (key)``."""
        text = f"{self.source or '(default)'} -> {self.destination_type}:{self.destination} [{self.routing_key}]"
        if self.arguments:
            text += f" {arguments_text(self.arguments)}"
        return text

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class Policy:
    """A policy: the one broker object whose settings change in place."""

    vhost: str
    name: str
    pattern: str
    definition: dict[str, Any] = field(default_factory=dict)
    apply_to: str = "queues"  # queues | exchanges | all
    priority: int = 0
    kind: ClassVar[str] = "policy"

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.name)

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class OperatorPolicy(Policy):
    """An operator policy: set by a broker operator, combined with the policy for its keys (the stricter wins)."""

    kind: ClassVar[str] = "operator_policy"

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.name)

    def __hash__(self) -> int:
        return hash(self.key)


Resource = VHost | Exchange | Queue | Binding | Policy | AccountResource  # accounts: users, permissions, vhost settings


@dataclass(frozen=True)
class ExternalExchange:
    """An exchange the topology uses but does not own (``external_exchanges``): plan checks it exists."""

    vhost: str
    name: str

    @property
    def key(self) -> Key:
        return ("external_exchange", self.vhost, self.name)


@dataclass(frozen=True, slots=True)  # no __dict__: a topology holds hundreds of thousands
class DeadLetter:
    """Where a queue's rejected and expired messages go (after ``dead_letter`` expansion)."""

    vhost: str
    queue: str
    exchange: str
    routing_key: str
    dead_letter_queue: str
    via: str = "arguments"  # arguments | policy


@dataclass(frozen=True)
class Retry:
    """Retry settings for a task, from the topology's ``tasks.<name>.retry``."""

    max_retries: int = 3
    delay: float = 1.0  # seconds before the first retry
    backoff: bool = True  # double the delay at each retry
    delay_max: float = 600.0
    via: str = "worker"  # worker: Celery's countdown | broker: the message waits in a TTL retry queue
    jitter: bool = False  # wait a random part of the delay (via worker); off: the delay is the wait

    def wait_ms(self, retries: int) -> int:
        """Milliseconds to wait before retry number ``retries + 1`` (``retries`` already made)."""
        seconds = self.delay
        if self.backoff:
            for _ in range(retries):
                if seconds >= self.delay_max:
                    break
                seconds *= 2
        return round(min(seconds, self.delay_max) * 1000)

    def waits_ms(self) -> tuple[int, ...]:
        """Every distinct wait the retries use, shortest first: one retry queue each."""
        waits: list[int] = []
        for retries in range(self.max_retries):
            wait = self.wait_ms(retries)
            if waits and wait == waits[-1]:
                break  # capped (or not growing): every later retry waits the same
            waits.append(wait)
        return tuple(waits)


@dataclass(frozen=True)
class RetryQueue:
    """A queue where a failed task's retry waits ``wait_ms``, then dead-letters back to ``queue``."""

    vhost: str
    queue: str  # the work queue the message returns to
    wait_ms: int
    name: str


@dataclass(frozen=True)
class TaskRoute:
    """Which queue a task (or a glob of tasks) is routed to, and who publishes there."""

    pattern: str  # an exact task name or a glob such as billing.tasks.*
    queue: str
    consume: str = "celery"  # celery | foreign
    retry: Retry | None = None
    run_on: str | None = None  # foreign: the Celery queue the task runs on (default: the default queue)

    def work_queue(self, default_queue: str) -> str:
        """Where the task's Celery messages run: its queue, or for a foreign task ``run_on`` or the default queue."""
        if self.consume == "celery":
            return self.queue
        return self.run_on or default_queue

    @property
    def is_glob(self) -> bool:
        return any(ch in self.pattern for ch in "*?[")


@dataclass(frozen=True)
class CelerySettings:
    """The ``celery`` section: the vhost the workers use, their default queue, and what settles their messages."""

    vhost: str = "/"
    default_queue: str = "celery"
    runtime: str | None = None  # "provisioner": workers call provisioner.celery.install(app); "celery": plain

    @property
    def bounds_requeues(self) -> bool:
        """Whether the workers requeue a failed task at most once (then dead-letter it), whatever the broker counts."""
        return self.runtime == "provisioner"


@dataclass(frozen=True)
class Topology:
    """Everything the files describe, expanded and sorted by key."""

    vhosts: tuple[VHost, ...] = ()
    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[Queue, ...] = ()
    bindings: tuple[Binding, ...] = ()
    policies: tuple[Policy, ...] = ()
    external_exchanges: tuple[ExternalExchange, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()
    retry_queues: tuple[RetryQueue, ...] = ()
    tasks: tuple[TaskRoute, ...] = ()
    celery: CelerySettings = field(default_factory=CelerySettings)
    sources: tuple[str, ...] = ()
    accounts: Accounts = field(default_factory=Accounts)  # users, permissions, vhost settings (accounts.py)

    def resources(self) -> tuple[Resource, ...]:
        """Every broker object, in creation order (vhosts, exchanges, queues, bindings, policies)."""
        return (*self.vhosts, *self.exchanges, *self.queues, *self.bindings, *self.policies)

    def in_vhost(self, vhost: str) -> Topology:
        """The part of the topology that lives in one vhost."""
        if self.vhosts == (VHost(vhost),) and self.celery.vhost == vhost:
            return self  # all of it: every object lives in one of the topology's vhosts
        return Topology(
            vhosts=tuple(v for v in self.vhosts if v.name == vhost),
            exchanges=tuple(x for x in self.exchanges if x.vhost == vhost),
            queues=tuple(q for q in self.queues if q.vhost == vhost),
            bindings=tuple(b for b in self.bindings if b.vhost == vhost),
            policies=tuple(p for p in self.policies if p.vhost == vhost),
            external_exchanges=tuple(x for x in self.external_exchanges if x.vhost == vhost),
            dead_letters=tuple(d for d in self.dead_letters if d.vhost == vhost),
            retry_queues=tuple(r for r in self.retry_queues if r.vhost == vhost),
            tasks=self.tasks if self.celery.vhost == vhost else (),
            celery=self.celery,
            sources=self.sources,
        )

    def queue(self, vhost: str, name: str) -> Queue | None:
        """The queue of that name in that vhost, if the topology has it."""
        return self._queues.get((vhost, name))

    def exchange(self, vhost: str, name: str) -> Exchange | None:
        """The exchange of that name in that vhost, if the topology has it."""
        return self._exchanges.get((vhost, name))

    def bindings_of(self, vhost: str, queue: str) -> tuple[Binding, ...]:
        """The bindings whose destination is that queue, in file order."""
        return self._queue_bindings.get((vhost, queue), ())

    def bindings_from(self, vhost: str, exchange: str) -> tuple[Binding, ...]:
        """The bindings whose source is that exchange, in file order."""
        return self._bindings_by_source.get((vhost, exchange), ())

    def exchange_type(self, vhost: str, name: str) -> str | None:
        """The type of an exchange of the topology or a built-in one; None when unknown."""
        exchange = self._exchanges.get((vhost, name))
        return exchange.type if exchange is not None else BUILT_IN_EXCHANGE_TYPES.get(name)

    def has_binding(self, binding: Binding) -> bool:
        """Whether the topology holds this very binding (all its fields equal)."""
        return binding in self._binding_set

    def dead_letter_of(self, vhost: str, queue: str) -> DeadLetter | None:
        """The dead-letter target of a queue, if it has one."""
        return self._dead_letters.get((vhost, queue))

    # Indexes built on first use: lookups stay O(1) at tens of thousands of objects.
    # cached_property writes the instance's __dict__ directly, so the dataclass stays frozen
    # and its fields (equality, repr) are untouched.

    @cached_property
    def _queues(self) -> dict[tuple[str, str], Queue]:
        return {(q.vhost, q.name): q for q in reversed(self.queues)}  # reversed: the first one wins

    @cached_property
    def _exchanges(self) -> dict[tuple[str, str], Exchange]:
        return {(x.vhost, x.name): x for x in reversed(self.exchanges)}

    @cached_property
    def _binding_set(self) -> frozenset[Binding]:
        return frozenset(self.bindings)

    @cached_property
    def _dead_letters(self) -> dict[tuple[str, str], DeadLetter]:
        return {(d.vhost, d.queue): d for d in reversed(self.dead_letters)}

    @cached_property
    def _queue_bindings(self) -> dict[tuple[str, str], tuple[Binding, ...]]:
        found: dict[tuple[str, str], list[Binding]] = {}
        for b in self.bindings:
            if b.destination_type == "queue":
                found.setdefault((b.vhost, b.destination), []).append(b)
        return {key: tuple(value) for key, value in found.items()}

    @cached_property
    def _bindings_by_source(self) -> dict[tuple[str, str], tuple[Binding, ...]]:
        found: dict[tuple[str, str], list[Binding]] = {}
        for b in self.bindings:
            found.setdefault((b.vhost, b.source), []).append(b)
        return {key: tuple(value) for key, value in found.items()}
