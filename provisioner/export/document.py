"""Pure: one vhost's definitions -> the body of a topology document (the inverse of expand).

Every choice here is made so that expanding the written body gives back exactly
the objects read: a dead-letter exchange or queue is left out of the file only
when ``dead_letter`` would create it identically, a policy becomes ``policy:``
only when it is the one expand would make, a friendly field is used only when
the schema takes the value.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from provisioner.export.left_out import dropped_bindings, left_out
from provisioner.live_state import delayed_delivery_key, live_from_definitions
from provisioner.migration import is_migration_queue
from provisioner.topology.expand import DEFAULT_DEAD_LETTER_SUFFIX, QUEUE_POLICY_PREFIX
from provisioner.topology.model import (
    QUEUE_ARGUMENT_NAMES,
    Binding,
    Exchange,
    Policy,
    Queue,
    Topology,
)
from provisioner.topology.schema import topology_schema

Path = tuple[str, ...]  # where in the vhost body: ("queues", "orders")
DEAD_LETTER_ARGUMENTS = ("x-dead-letter-exchange", "x-dead-letter-routing-key")
DEAD_LETTER_SETTINGS = ("dead-letter-exchange", "dead-letter-routing-key")
POLICY_KEY = re.compile(r"[a-z][a-z0-9-]*")  # what the schema takes as a key of a queue's `policy:`


@dataclass(frozen=True)
class Note:
    """Something the user should read: a comment at ``path`` and, for problems, a line on stderr."""

    path: Path
    message: str
    problem: bool = False  # True: validate would refuse it or it is broken on the broker


@dataclass
class VhostExport:
    """One vhost's body (exchanges, queues, policies) and what was noted on the way."""

    name: str
    body: dict[str, Any] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    queues: dict[str, Queue] = field(default_factory=dict)  # every live queue, for the Celery comparison
    skipped: int = 0  # objects of Celery's, the broker's or the tool's own
    topology: Topology = field(default_factory=Topology)  # what was exported, for where Celery's messages land


@dataclass(frozen=True)
class _DeadLetterPair:
    """A queue's dead-letter settings and the binding that carries them to their queue."""

    exchange: str
    routing_key: str
    via: str  # arguments | policy
    binding: Binding | None  # exchange -> dead-letter queue [routing_key], if the broker has one


def export_vhost(name: str, definitions: dict[str, Any]) -> VhostExport:
    """The topology body of one vhost's definitions (objects of that vhost only)."""
    live = live_from_definitions(name, definitions)
    result = VhostExport(name, skipped=live.ignored)
    found = left_out(name, definitions, live.topology) + dropped_bindings(name, definitions, live.topology)
    result.notes += [Note((), line) for line in found]
    topology = _without_migrations(_without_delayed_delivery(live.topology, result), result)
    result.queues = {q.name: q for q in topology.queues}
    result.topology = topology
    index = _Index.of(topology)
    own_policies = {q.name: p for q in topology.queues if (p := _own_policy(q, index)) is not None}
    pairs = {q.name: pair for q in topology.queues if (pair := _dead_letter_pair(q, own_policies, index))}
    absorbed = _absorbed(topology, pairs, own_policies, index)
    absorbed_exchanges, absorbed_queues = absorbed
    product_bindings = {pair.binding.key for pair in pairs.values() if pair.binding is not None}
    bindings_to: dict[tuple[str, str], list[Binding]] = defaultdict(list)
    for binding in sorted(topology.bindings, key=_binding_order):
        if binding.key not in product_bindings:
            bindings_to[(binding.destination_type, binding.destination)].append(binding)
    exchanges = {
        x.name: _exchange_body(x, bindings_to[("exchange", x.name)])
        for x in sorted(topology.exchanges, key=lambda x: x.name)
        if x.name not in absorbed_exchanges
    }
    queues = {}
    for queue in sorted(topology.queues, key=lambda q: q.name):
        if queue.name in absorbed_queues:
            continue
        pair = pairs.get(queue.name)
        queues[queue.name] = _queue_body(
            queue, bindings_to[("queue", queue.name)], pair, own_policies.get(queue.name), absorbed, topology
        )
    own_names = {p.name for p in own_policies.values()}
    policies = {
        p.name: _policy_body(p) for p in sorted(topology.policies, key=lambda p: p.name) if p.name not in own_names
    }
    for section, content in (("exchanges", exchanges), ("queues", queues), ("policies", policies)):
        if content:
            result.body[section] = content
    _note_missing_exchanges(topology, own_policies, index, result)
    return result


def _without_delayed_delivery(topology: Topology, result: VhostExport) -> Topology:
    """Leave out the ``#.<key>`` bindings a worker adds for native delayed delivery, by plan's own rule.

    Plan knows them by the topology's binding ``X -> Q [key]`` beside them; the
    export writes that binding, so plan of the export leaves them out the same way.
    """
    types = {x.name: x.type for x in topology.exchanges}
    present = {b.key for b in topology.bindings}

    def delayed(b: Binding) -> bool:
        return (
            b.destination_type == "queue"
            and not b.arguments
            and types.get(b.source) not in (None, "direct", "headers")
            and any(
                w.key != b.key and w.source == b.source and delayed_delivery_key(w.routing_key) == b.routing_key
                for w in topology.bindings_of(b.vhost, b.destination)
            )
        )

    bindings = tuple(b for b in topology.bindings if not delayed(b))
    result.skipped += len(present) - len(bindings)
    return replace(topology, bindings=bindings)


def _without_migrations(topology: Topology, result: VhostExport) -> Topology:
    """Leave out migrations in progress (the tool's own), with a note that says how to finish them."""
    migrating = {q.name for q in topology.queues if is_migration_queue(q.name)}
    for name in sorted(migrating):
        result.notes.append(
            Note(
                (),
                f"queue {name!r} in vhost {result.name!r} is a migration in progress, not exported: finish it "
                "with `provision apply --migrate` on the topology that started it, then export again",
            )
        )
        result.skipped += 1
    bindings = tuple(b for b in topology.bindings if not (b.destination_type == "queue" and b.destination in migrating))
    result.skipped += len(topology.bindings) - len(bindings)
    queues = tuple(q for q in topology.queues if q.name not in migrating)
    return replace(topology, queues=queues, bindings=bindings)


def _binding_order(binding: Binding) -> tuple[str, ...]:
    return (binding.source, binding.routing_key, str(sorted(binding.arguments.items())))


@dataclass(frozen=True)
class _Index:
    """Lookups over one vhost's objects, built once: each queue asking the whole vhost made an export
    quadratic (N = 2000: 2.5 s of 3.3 s of CPU in three scans; N = 8000 took 16 s)."""

    exchange_names: frozenset[str]
    policies_by_name: dict[str, list[Policy]]  # in the topology's order
    plain_queue_bindings: dict[tuple[str, str], list[Binding]]  # (source, key): to a queue, no arguments
    touching: dict[str, list[Binding]]  # exchange name: the bindings from it or to it

    @classmethod
    def of(cls, topology: Topology) -> _Index:
        policies: dict[str, list[Policy]] = defaultdict(list)
        for policy in topology.policies:
            policies[policy.name].append(policy)
        plain: dict[tuple[str, str], list[Binding]] = defaultdict(list)
        touching: dict[str, list[Binding]] = defaultdict(list)
        for b in topology.bindings:
            if b.destination_type == "queue" and not b.arguments:
                plain[(b.source, b.routing_key)].append(b)
            touching[b.source].append(b)
            if b.destination_type == "exchange" and b.destination != b.source:
                touching[b.destination].append(b)
        return cls(frozenset(x.name for x in topology.exchanges), dict(policies), dict(plain), dict(touching))


def _own_policy(queue: Queue, index: _Index) -> Policy | None:
    """The policy expand makes for a queue's ``policy:`` (or ``dead_letter: {via: policy}``), if present."""
    for policy in index.policies_by_name.get(f"{QUEUE_POLICY_PREFIX}{queue.name}", ()):
        if (
            policy.pattern == f"^{re.escape(queue.name)}$"
            and policy.apply_to == "queues"
            and policy.priority == 0
            and policy.definition
            and all(POLICY_KEY.fullmatch(key) for key in policy.definition)
        ):
            return policy
    return None


def _dead_letter_pair(queue: Queue, own_policies: dict[str, Policy], index: _Index) -> _DeadLetterPair | None:
    """The queue's dead-letter settings when ``dead_letter`` can say them (both exchange and key set)."""
    policy = own_policies.get(queue.name)
    in_arguments = [a for a in DEAD_LETTER_ARGUMENTS if a in queue.arguments]
    in_policy = [s for s in DEAD_LETTER_SETTINGS if policy is not None and s in policy.definition]
    if len(in_arguments) == 2 and not in_policy:
        exchange, key, via = (
            queue.arguments[DEAD_LETTER_ARGUMENTS[0]],
            queue.arguments[DEAD_LETTER_ARGUMENTS[1]],
            "arguments",
        )
    elif len(in_policy) == 2 and not in_arguments and policy is not None:
        exchange, key, via = (
            policy.definition[DEAD_LETTER_SETTINGS[0]],
            policy.definition[DEAD_LETTER_SETTINGS[1]],
            "policy",
        )
    else:
        return None
    if not isinstance(exchange, str) or not isinstance(key, str) or not exchange or exchange.startswith("amq."):
        return None
    if exchange not in index.exchange_names:
        return None  # noted by _note_missing_exchanges; raw arguments say it as it is
    candidates = index.plain_queue_bindings.get((exchange, key), [])
    if not candidates:
        return None  # dead_letter would add a binding the broker does not have
    binding = min(
        candidates, key=lambda b: (b.destination != f"{queue.name}.{DEFAULT_DEAD_LETTER_SUFFIX}", b.destination)
    )
    return _DeadLetterPair(exchange, key, via, binding)


def _absorbed(
    topology: Topology, pairs: dict[str, _DeadLetterPair], own_policies: dict[str, Policy], index: _Index
) -> tuple[set[str], set[str]]:
    """Dead-letter exchanges and queues that ``dead_letter`` creates as they are, so the file leaves them out."""
    users: dict[str, list[str]] = defaultdict(list)
    queue_users: dict[str, list[str]] = defaultdict(list)
    for name, pair in pairs.items():
        users[pair.exchange].append(name)
        if pair.binding is not None:
            queue_users[pair.binding.destination].append(name)
    products = {pair.binding.key for pair in pairs.values() if pair.binding is not None}
    exchanges = set()
    for exchange in topology.exchanges:
        touching = index.touching.get(exchange.name, [])
        if (
            len(users.get(exchange.name, ())) == 1
            and exchange == Exchange(exchange.vhost, exchange.name, "direct")
            and all(b.key in products for b in touching)
        ):
            exchanges.add(exchange.name)
    queues = set()
    for queue in topology.queues:
        sources = queue_users.get(queue.name, [])
        if (
            len(sources) == 1
            and sources[0] != queue.name
            and queue.type in ("classic", "quorum")
            and queue == Queue(queue.vhost, queue.name, queue.type)
            and queue.name not in pairs
            and queue.name not in own_policies
            and all(b.key in products for b in topology.bindings_of(queue.vhost, queue.name))
        ):
            queues.add(queue.name)
    return exchanges, queues


def queue_entry(queue: Queue, bindings: list[Binding]) -> dict[str, Any]:
    """The body of a queue with no dead-letter pair or policy of its own (one Celery declares by itself)."""
    return _queue_body(queue, bindings, None, None, (set(), set()), Topology())


def exchange_entry(exchange: Exchange) -> dict[str, Any]:
    """The body of an exchange with no bindings of its own."""
    return _exchange_body(exchange, [])


def _exchange_body(exchange: Exchange, bindings: list[Binding]) -> dict[str, Any]:
    body: dict[str, Any] = {"type": exchange.type}
    if not exchange.durable:
        body["durable"] = False
    if exchange.auto_delete:
        body["auto_delete"] = True
    if exchange.internal:
        body["internal"] = True
    if exchange.arguments:
        body["arguments"] = dict(exchange.arguments)
    if bindings:
        body["bindings"] = [_binding_body(b) for b in bindings]
    return body


def _policy_body(policy: Policy) -> dict[str, Any]:
    body: dict[str, Any] = {"pattern": policy.pattern}
    if policy.apply_to != "queues":
        body["apply_to"] = policy.apply_to
    if policy.priority:
        body["priority"] = policy.priority
    body["definition"] = dict(policy.definition)
    return body


def _binding_body(binding: Binding) -> dict[str, Any]:
    body: dict[str, Any] = {"exchange": binding.source}
    if binding.routing_key:
        body["routing_key"] = binding.routing_key
    if binding.arguments:
        body["arguments"] = dict(binding.arguments)
    return body


def _queue_body(
    queue: Queue,
    bindings: list[Binding],
    pair: _DeadLetterPair | None,
    policy: Policy | None,
    absorbed: tuple[set[str], set[str]],
    topology: Topology,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if queue.type != "classic":
        body["type"] = queue.type
    if not queue.durable:
        body["durable"] = False
    if queue.auto_delete:
        body["auto_delete"] = True
    arguments = dict(queue.arguments)
    if pair is not None and pair.via == "arguments":
        for name in DEAD_LETTER_ARGUMENTS:
            arguments.pop(name)
    body.update(_friendly_fields(arguments))
    if arguments:
        body["arguments"] = arguments
    if bindings:
        body["bindings"] = [_binding_body(b) for b in bindings]
    if pair is not None:
        body["dead_letter"] = _dead_letter_setting(queue, bindings, pair, absorbed, topology)
    if policy is not None:
        definition = dict(policy.definition)
        if pair is not None and pair.via == "policy":
            for name in DEAD_LETTER_SETTINGS:
                definition.pop(name)
        if definition:
            body["policy"] = definition
    return body


@cache
def _friendly_validators() -> dict[str, Draft202012Validator]:
    properties = topology_schema()["$defs"]["queue"]["properties"]
    return {friendly: Draft202012Validator(properties[friendly]) for friendly in QUEUE_ARGUMENT_NAMES}


def _friendly_fields(arguments: dict[str, Any]) -> dict[str, Any]:
    """Move every x-argument the schema has a friendly field for (and whose value it takes) out of ``arguments``."""
    fields = {}
    for friendly, x_name in QUEUE_ARGUMENT_NAMES.items():
        if x_name in arguments and _friendly_validators()[friendly].is_valid(arguments[x_name]):
            fields[friendly] = arguments.pop(x_name)
    return fields


def _dead_letter_setting(
    queue: Queue,
    bindings: list[Binding],
    pair: _DeadLetterPair,
    absorbed: tuple[set[str], set[str]],
    topology: Topology,
) -> bool | dict[str, Any]:
    """``true`` when our convention holds, else the smallest mapping that expands to the same objects."""
    assert pair.binding is not None
    target = pair.binding.destination
    key = bindings[0].routing_key if bindings and bindings[0].routing_key else queue.name
    absorbed_exchange, absorbed_queue = pair.exchange in absorbed[0], target in absorbed[1]
    suffixes = {DEFAULT_DEAD_LETTER_SUFFIX}
    for name, base in ((pair.exchange, queue.name), (target, queue.name), (pair.routing_key, key)):
        if name.startswith(f"{base}.") and len(name) > len(base) + 1:
            suffixes.add(name[len(base) + 1 :])
    best: dict[str, Any] | None = None
    for suffix in sorted(suffixes, key=lambda s: (s != DEFAULT_DEAD_LETTER_SUFFIX, s)):
        mapping: dict[str, Any] = {} if suffix == DEFAULT_DEAD_LETTER_SUFFIX else {"suffix": suffix}
        if pair.exchange != f"{queue.name}.{suffix}" or not absorbed_exchange:
            mapping["exchange"] = pair.exchange
        if target != f"{queue.name}.{suffix}" or not absorbed_queue:
            mapping["queue"] = target
        if pair.routing_key != f"{key}.{suffix}":
            mapping["routing_key"] = pair.routing_key
        if best is None or len(mapping) < len(best):
            best = mapping
    assert best is not None
    target_queue = topology.queue(queue.vhost, target)
    default_type = "quorum" if queue.type == "quorum" else "classic"
    if absorbed_queue and target_queue is not None and target_queue.type != default_type:
        best["queue_type"] = target_queue.type
    if pair.via == "policy":
        best["via"] = "policy"
    return best or True


def _note_missing_exchanges(
    topology: Topology, own_policies: dict[str, Policy], index: _Index, result: VhostExport
) -> None:
    """A dead-letter exchange that exists nowhere drops what it is given: a problem at its queue."""
    exchanges = index.exchange_names
    for queue in sorted(topology.queues, key=lambda q: q.name):
        policy = own_policies.get(queue.name)
        exchange = queue.arguments.get(DEAD_LETTER_ARGUMENTS[0])
        if exchange is None and policy is not None:
            exchange = policy.definition.get(DEAD_LETTER_SETTINGS[0])
        if not isinstance(exchange, str) or exchange == "" or exchange.startswith("amq.") or exchange in exchanges:
            continue
        result.notes.append(
            Note(
                ("queues", queue.name),
                f"dead-letter exchange {exchange!r} of queue {queue.name!r} exists nowhere in vhost "
                f"{result.name!r}: its dead letters are dropped",
                problem=True,
            )
        )
