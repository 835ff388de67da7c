"""Pure: what the broker does to managed objects beyond what the topology declares. No I/O here.

Three findings diff.py adds to a plan, one vhost at a time:
- hidden drift: a policy or operator policy the topology does not describe that
  changes the effective settings of a managed queue or exchange (it wins by
  priority, shadows a topology policy, or tightens a limit);
- the settings each managed queue will have after apply (its policy, operator
  policy and, for quorum queues, the delivery limit the broker enforces);
- problems: external exchanges the topology relies on that the broker lacks.
"""

from __future__ import annotations

from typing import Any

from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.live_state import LiveVhost
from provisioner.plan import Drift, Hit, QueueSettings
from provisioner.topology.model import Exchange, OperatorPolicy, Policy, Queue, Topology
from provisioner.topology.policies import Effective, PolicySet, effective

DEFAULT_DELIVERY_LIMIT_4X = 20  # RabbitMQ 4.0+ gives every quorum queue this limit unless told otherwise


def _target(resource: Exchange | Queue) -> str:
    return "exchange" if isinstance(resource, Exchange) else resource.type


def _split(desired: Topology, state: LiveVhost) -> tuple[list[Policy], list[Policy], list[Policy]]:
    """(the topology's policies, live policies it does not describe, live operator policies)."""
    ours = list(desired.policies)
    names = {p.name for p in ours}
    live = state.topology.policies if state.exists else ()
    foreign = [p for p in live if not isinstance(p, OperatorPolicy) and p.name not in names]
    operator: list[Policy] = [p for p in live if isinstance(p, OperatorPolicy)]
    return ours, foreign, operator


def hidden_drift(desired: Topology, state: LiveVhost) -> list[Drift]:
    """Policies and operator policies outside the topology that change a managed object's settings."""
    ours, foreign, operator = _split(desired, state)
    if not foreign and not operator:
        return []
    by_name = {p.key: p for p in (*foreign, *operator)}
    intended_set, chosen_set, operator_set = PolicySet(ours), PolicySet([*ours, *foreign]), PolicySet(operator)
    hits: dict[tuple[str, ...], list[Hit]] = {}
    managed: list[Exchange | Queue] = [*desired.exchanges, *desired.queues]
    for resource in managed:
        target = _target(resource)
        intended = effective(target, resource.name, intended_set)
        chosen = effective(target, resource.name, chosen_set)
        actual = effective(target, resource.name, chosen_set, operator_set)
        if chosen.policy != intended.policy and chosen.policy is not None:
            culprit = next(p for p in foreign if p.name == chosen.policy)
            settings = _setting_changes(intended.definition, chosen.definition)
            hits.setdefault(culprit.key, []).append(Hit(resource.kind, resource.name, settings, intended.policy))
        if actual.operator_policy is not None:
            settings = _setting_changes(chosen.definition, actual.definition)
            if settings:
                culprit_key = (OPERATOR_POLICY.name, state.name, actual.operator_policy)
                hits.setdefault(culprit_key, []).append(Hit(resource.kind, resource.name, settings))
    return [Drift(by_name[key], tuple(found)) for key, found in sorted(hits.items())]


def _setting_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    return tuple(
        (key, before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    )


def queue_settings(desired: Topology, state: LiveVhost, prune: bool, version: str) -> list[QueueSettings]:
    """Each managed queue's policy settings after apply (with --prune: without the policies it deletes)."""
    ours, foreign, operator = _split(desired, state)
    if prune:
        foreign, operator = [], []
    found = []
    policies, operators = PolicySet([*ours, *foreign]), PolicySet(operator)
    for queue in desired.queues:
        applied = effective(queue.type, queue.name, policies, operators)
        limit, source = delivery_limit(queue, applied, version) if queue.type == "quorum" else (None, "")
        found.append(
            QueueSettings(
                queue.vhost,
                queue.name,
                queue.type,
                applied.policy,
                applied.operator_policy,
                applied.definition,
                limit,
                source,
            )
        )
    return found


def delivery_limit(queue: Queue, applied: Effective, version: str) -> tuple[int | None, str]:
    """The delivery limit a quorum queue gets (None: unlimited) and where it comes from.

    Argument and policies combine as the broker does: the smallest wins; a
    negative value means no limit (4.x).
    """
    candidates = []
    if isinstance(queue.arguments.get("x-delivery-limit"), int):
        candidates.append((queue.arguments["x-delivery-limit"], "argument x-delivery-limit"))
    value = applied.definition.get("delivery-limit")
    if isinstance(value, int) and not isinstance(value, bool):
        owners = (("policy", applied.policy), ("operator policy", applied.operator_policy))
        candidates.append((value, " and ".join(f"{label} {name}" for label, name in owners if name)))
    if candidates:
        limit, source = min(candidates, key=lambda pair: pair[0])
        return (None, f"{source} (negative: unlimited)") if limit < 0 else (limit, source)
    if major_version(version) >= 4:
        return DEFAULT_DELIVERY_LIMIT_4X, "the broker's default on 4.x"
    if version:
        return None, f"no default on RabbitMQ {version}"
    return None, "none set (RabbitMQ 4.x would make it 20)"


def major_version(version: str) -> int:
    """The major of a RabbitMQ version (0 when unknown): what 4.x changed depends on it."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def external_problems(desired: Topology, state: LiveVhost) -> list[str]:
    """External exchanges the topology relies on that the broker does not have."""
    present = {x.name for x in state.topology.exchanges} if state.exists else set()
    return [
        f"external exchange {x.name!r} does not exist in vhost {x.vhost!r} on the broker "
        f"(the topology lists it under external_exchanges; create it, or define it under exchanges)"
        for x in desired.external_exchanges
        if x.name not in present and not x.name.startswith("amq.")
    ]
