"""Pure: a vhost's definitions document -> the same model types the topology uses, normalised the same way.

No I/O here (broker/live.py fetches the documents): recorded answers make the
diff tests. What the broker or Celery make on their own is left out, so it can
never show as drift.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.kinds.binding import BINDING
from provisioner.kinds.exchange import EXCHANGE
from provisioner.kinds.policy import POLICY, read_policy
from provisioner.kinds.queue import QUEUE
from provisioner.topology.model import (
    LOCK_QUEUE,
    MIGRATE_POLICY_PREFIX,
    PROBE_SUFFIX,
    Binding,
    OperatorPolicy,
    Policy,
    Topology,
    VHost,
)

# Native delayed delivery (kombu.transport.native_delayed_delivery): 28 levels of exchange + queue, and the
# exchange the last level dead-letters into. Exact names, never a pattern.
CELERY_DELAYED_LEVELS = tuple(f"celery_delayed_{level}" for level in range(28))
CELERY_DELAYED_DELIVERY = "celery_delayed_delivery"

# Objects Celery (kombu) declares by itself: remote control, events, worker-direct, native delayed delivery.
CELERY_OWNED_EXCHANGES = (
    "celery.pidbox",
    "reply.celery.pidbox",
    "celeryev",
    "C.dq2",
    *CELERY_DELAYED_LEVELS,
    CELERY_DELAYED_DELIVERY,
)
BROADCAST_QUEUE = "bcast.????????-????-????-????-????????????"  # kombu's Broadcast: one per worker, "bcast." + uuid4
CELERY_OWNED_QUEUES = (
    "*.celery.pidbox",
    "*.reply.celery.pidbox",
    "celeryev.*",
    "*.dq2",
    BROADCAST_QUEUE,
    *CELERY_DELAYED_LEVELS,
)


_CELERY_OWNED = {
    kind: re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))
    for kind, patterns in ((EXCHANGE.name, CELERY_OWNED_EXCHANGES), (QUEUE.name, CELERY_OWNED_QUEUES))
}


def celery_owned(kind: str, name: str) -> bool:
    """Whether Celery makes this object itself (never drift, never pruned)."""
    return _CELERY_OWNED[kind].match(name) is not None


IncludeObject = Callable[[str, str, bool], bool]
"""Whether plan and apply see a live object: (kind, name, whether the topology describes it) -> keep it.

What a filter leaves out is never listed, never drift, never pruned. Exchanges,
queues, policies and operator policies pass through it; a binding is left out
with its source or destination.
"""


def include_object(kind: str, name: str, wanted: bool) -> bool:
    """The default filter: everything but what the broker, Celery and provisioner make by themselves."""
    if kind == EXCHANGE.name:
        return not (name == "" or name.startswith("amq.") or celery_owned(EXCHANGE.name, name))
    if kind == QUEUE.name:
        return not (
            name.startswith("amq.gen-")  # server-named queues of running clients
            or celery_owned(QUEUE.name, name)
            or name == LOCK_QUEUE  # the apply lock (broker/lock.py)
            or name.endswith(PROBE_SUFFIX)  # deleted at once; expires by itself if its apply was killed
        )
    if kind == POLICY.name:
        return not name.startswith(MIGRATE_POLICY_PREFIX)  # guards a migration's temporary queue while it lives
    return True


def ignoring(patterns: Iterable[str], base: IncludeObject = include_object) -> IncludeObject:
    """``base``, also leaving out objects the topology does not describe whose name matches a glob pattern."""
    names = re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))
    if not names.pattern:
        return base
    return lambda kind, name, wanted: base(kind, name, wanted) and (wanted or names.match(name) is None)


def delayed_delivery_key(routing_key: str) -> str:
    """The key Celery binds a queue with for native delayed delivery (kombu's rule)."""
    return routing_key if routing_key.startswith("#") else f"#.{routing_key}"


def celery_delayed_binding(binding: Binding, desired: Topology) -> bool:
    """Whether a worker on the rendered config made this binding for native delayed delivery.

    Exactly: ``#.{key}`` without arguments, from the exchange of one of the
    queue's own topology bindings (key ``key``), when that exchange is neither
    direct (Celery skips those) nor headers (never bound so; such a binding
    would capture every message of the exchange).
    """
    if binding.destination_type != "queue" or binding.arguments or not binding.routing_key.startswith("#"):
        return False  # Celery's is to a queue, without arguments, by a key delayed_delivery_key() starts with '#'
    if desired.has_binding(binding):
        return False  # a binding of the topology itself (key starting with #) stays managed
    return any(
        wanted.source == binding.source
        and delayed_delivery_key(wanted.routing_key) == binding.routing_key
        and desired.exchange_type(binding.vhost, wanted.source) not in (None, "direct", "headers")
        for wanted in desired.bindings_of(binding.vhost, binding.destination)
    )


@dataclass(frozen=True)
class QueueStats:
    """What a plan shows beside a queue it would replace or delete."""

    messages: int = 0
    consumers: int = 0


@dataclass(frozen=True)
class LiveVhost:
    """One vhost as the broker holds it; ``topology`` holds only objects a topology could manage."""

    name: str
    exists: bool
    topology: Topology = field(default_factory=Topology)
    stats: dict[str, QueueStats] = field(default_factory=dict)
    ignored: int = 0  # objects of Celery's or the broker's own, left out
    version: str = ""  # the broker's RabbitMQ version, as its definitions say ("" when unknown)
    read: str = ""  # how it was read: "kinds" (per-kind lists) or "definitions" (broker/reads.py)


def live_from_definitions(
    vhost: str,
    definitions: dict[str, Any],
    details: dict[str, dict[str, Any]] | None = None,
    desired: Topology | None = None,
    operator_policies: list[dict[str, Any]] | None = None,
    include: IncludeObject = include_object,
) -> LiveVhost:
    """Pure: the management API's answers -> LiveVhost (recorded answers make the diff tests).

    ``details`` (GET /api/queues rows) adds counts; without it a queue's type
    comes from its ``x-queue-type`` argument, the only way a type is set.
    Definitions never hold exclusive queues. With ``desired``, the bindings
    Celery's native delayed delivery makes for its bindings are left out too.
    ``include`` decides which exchanges, queues and policies are seen at all.
    """
    details = details or {}
    ignored = 0
    wanted = _wanted_names(vhost, desired)
    exchanges = []
    for item in definitions.get("exchanges", []):
        if not include(EXCHANGE.name, item["name"], (EXCHANGE.name, item["name"]) in wanted):
            ignored += 1
            continue
        exchanges.append(EXCHANGE.from_definitions(vhost, item))
    queues = []
    skipped_queues: set[str] = set()
    for item in definitions.get("queues", []):
        name, detail = item["name"], details.get(item["name"], {})
        protected = item.get("internal_owner")  # the broker's own (4.1+): export marks it (protected.py)
        if bool(detail.get("exclusive")) or protected or not include(QUEUE.name, name, (QUEUE.name, name) in wanted):
            ignored += 1
            skipped_queues.add(name)
            continue
        queue = QUEUE.from_definitions(vhost, item)
        queues.append(replace(queue, type=str(detail["type"])) if detail.get("type") else queue)
    known_exchanges = {x.name for x in exchanges}
    bindings = []
    for item in definitions.get("bindings", []):
        source, destination = item["source"], item["destination"]
        if (
            source == ""
            or (source not in known_exchanges and not source.startswith("amq."))
            or (item["destination_type"] == "queue" and destination in skipped_queues)
            or (item["destination_type"] == "exchange" and destination not in known_exchanges)
        ):
            ignored += 1
            continue
        binding = BINDING.from_definitions(vhost, item)
        if desired is not None and celery_delayed_binding(binding, desired):
            ignored += 1
            continue
        bindings.append(binding)
    sources: tuple[tuple[type[Policy], list[dict[str, Any]]], ...] = (
        (Policy, definitions.get("policies", [])),
        (OperatorPolicy, operator_policies or []),
    )
    policies = [
        read_policy(model, vhost, item)
        for model, items in sources
        for item in items
        if include(model.kind, item["name"], (model.kind, item["name"]) in wanted)
    ]
    stats = {
        name: QueueStats(int(detail.get("messages") or 0), int(detail.get("consumers") or 0))
        for name, detail in details.items()
    }
    topology = Topology(
        vhosts=(VHost(vhost),),
        exchanges=tuple(exchanges),
        queues=tuple(queues),
        bindings=tuple(bindings),
        policies=tuple(policies),
    )
    return LiveVhost(vhost, True, topology, stats, ignored, str(definitions.get("rabbit_version") or ""))


def _wanted_names(vhost: str, desired: Topology | None) -> set[tuple[str, str]]:
    """(kind, name) of every exchange, queue and policy the topology describes in the vhost."""
    if desired is None:
        return set()
    mine = desired.in_vhost(vhost)
    names = {(EXCHANGE.name, x.name) for x in mine.exchanges} | {(QUEUE.name, q.name) for q in mine.queues}
    return names | {(p.kind, p.name) for p in mine.policies}
