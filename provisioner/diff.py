"""Pure: the desired topology x the live state -> a Plan. No I/O here.

Objects are compared through keyed maps in sorted order, so identical inputs
give a byte-identical plan. Both sides passed through the same normalisation
(``canonical_arguments``) before they get here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from provisioner.drift import external_problems, hidden_drift, major_version, queue_settings
from provisioner.kinds import PHASE_INDEX, describe, field_changes, kind_of
from provisioner.kinds.queue import QUEUE
from provisioner.live_state import LiveVhost
from provisioner.migration import is_migration_queue, original_name
from provisioner.plan import Action, Change, Drift, Parked, Plan, QueueSettings, Unmanaged
from provisioner.topology.model import Binding, Key, Queue, Resource, Topology, VHost


def differences(desired: Topology, live: Mapping[str, LiveVhost], prune: bool = False) -> Plan:
    """Every change that takes the live vhosts to the desired topology, in execution order."""
    changes: list[Change] = []
    unmanaged: list[Unmanaged] = []
    drift: list[Drift] = []
    problems: list[str] = []
    settings: list[QueueSettings] = []
    version = next((state.version for state in live.values() if state.version), "")
    for vhost in desired.vhosts:
        mine = desired.in_vhost(vhost.name)
        state = live.get(vhost.name) or LiveVhost(vhost.name, exists=False)
        problems.extend(external_problems(mine, state))
        state = _without_external(mine, state)
        found, left = _vhost_differences(mine, state, prune)
        changes.extend(found)
        unmanaged.extend(left)
        drift.extend(hidden_drift(mine, state))
        settings.extend(queue_settings(mine, state, prune, version))
    dead_letter_targets = {(QUEUE.name, d.vhost, d.dead_letter_queue) for d in desired.dead_letters}
    changes.sort(key=lambda c: (PHASE_INDEX[(c.action, c.kind)], c.key not in dead_letter_targets, c.key))
    unmanaged.sort(key=lambda u: u.resource.key)
    settings.sort(key=lambda s: (s.vhost, s.queue))  # in the topology's order otherwise: mapping order showed
    return Plan(
        tuple(_with_delivery_limits(changes, settings, version)),
        tuple(_noting_drift(unmanaged, drift)),
        tuple(drift),
        tuple(problems),
        tuple(settings),
    )


def _without_external(desired: Topology, state: LiveVhost) -> LiveVhost:
    """The live state minus the external exchanges the topology uses: never listed, never pruned."""
    external = {x.name for x in desired.external_exchanges}
    if not external or not state.exists:
        return state
    exchanges = tuple(x for x in state.topology.exchanges if x.name not in external)
    return replace(state, topology=replace(state.topology, exchanges=exchanges))


def _with_delivery_limits(changes: list[Change], settings: list[QueueSettings], version: str) -> list[Change]:
    """Queue creations say what the broker adds: quorum queues' delivery limit, 4.x's type on classic queues."""
    created = {(s.vhost, s.queue): s for s in settings}
    result = []
    for change in changes:
        found = created.get((change.vhost, change.name))
        is_creation = change.action is Action.CREATE and change.kind == QUEUE.name
        text = _creation_note(found, version) if is_creation and found is not None else ""
        if text:
            change = replace(change, reason=f"{change.reason}; {text}" if change.reason else text)
        result.append(change)
    return result


def _creation_note(settings: QueueSettings, version: str) -> str:
    if settings.type == "quorum":
        limit = "unlimited" if settings.delivery_limit is None else str(settings.delivery_limit)
        return f"delivery-limit {limit} ({settings.delivery_limit_source})"
    if settings.type == "classic" and major_version(version) >= 4:
        return f"stored with x-queue-type=classic (RabbitMQ {version})"
    return ""


def _noting_drift(unmanaged: list[Unmanaged], drift: list[Drift]) -> list[Unmanaged]:
    """Unmanaged policies that change managed objects say so where they are listed."""
    culprits = {item.policy.key for item in drift}
    return [
        replace(u, note=u.note or "changes managed objects: drift") if u.resource.key in culprits else u
        for u in unmanaged
    ]


def _vhost_differences(desired: Topology, state: LiveVhost, prune: bool) -> tuple[list[Change], list[Unmanaged]]:
    if not state.exists:
        creations = [Change(Action.CREATE, None, VHost(state.name), "vhost does not exist")]
        return creations + [Change(Action.CREATE, None, r, describe(r)) for r in _objects(desired)], []
    wanted = {r.key: r for r in _objects(desired)}
    present = {r.key: r for r in _objects(state.topology)}
    changes: list[Change] = []
    unmanaged: list[Unmanaged] = []
    for temporary in (q for q in state.topology.queues if is_migration_queue(q.name)):
        names = [key[2] for key in (*wanted, *present) if key[0] == QUEUE.name and key[1] == state.name]
        original: Key = (QUEUE.name, state.name, original_name(temporary.name, names))
        target, live = wanted.pop(original, None), present.pop(original, None)
        assert isinstance(target, Queue | None) and isinstance(live, Queue | None)
        changes.append(_unfinished(temporary, target, live, state))
        del present[temporary.key]
    # No sort here: differences() sorts the changes it returns (by phase and key).
    for key in [*wanted, *(key for key in present if key not in wanted)]:
        after, before = wanted.get(key), present.get(key)
        if before is None and after is not None:
            changes.append(Change(Action.CREATE, None, after, describe(after) or "missing on the broker"))
        elif after is None and before is not None:
            left = _left_alone(before, state, prune)
            if isinstance(left, Change):
                changes.append(left)
            elif left is not None:
                unmanaged.append(left)
        elif after is not None and before is not None and after != before:
            changes.append(_changed(before, after, state))
    return changes, unmanaged


def _unfinished(temporary: Queue, wanted: Queue | None, present: Queue | None, state: LiveVhost) -> Change:
    """A temporary queue is a migration to finish, whatever state its queue is in (even unmanaged or gone).

    The target is the topology's queue, else the live one as it is, else one like
    the temporary queue: apply --migrate brings messages and bindings back there.
    """
    target = wanted or present or Queue(temporary.vhost, original_name(temporary.name), temporary.type)
    bound = sum(1 for b in state.topology.bindings if b.destination_type == "queue" and b.destination == temporary.name)
    stats, held = state.stats.get(target.name), state.stats.get(temporary.name)
    reasons = ["unfinished migration"]
    fields = field_changes(present, target) if present is not None else ()
    if present is None:
        reasons.append("the queue is missing")
    elif fields:
        reasons.append(kind_of(target).reason(fields))
    return Change(
        Action.REPLACE,
        present,
        target,
        "; ".join(reasons),
        messages=None if present is None else (stats.messages if stats else 0),
        consumers=None if present is None else (stats.consumers if stats else 0),
        parked=Parked(temporary.name, bound, held.messages if held else None, held.consumers if held else None),
        fields=fields,
    )


def _objects(topology: Topology) -> tuple[Resource, ...]:
    return (*topology.exchanges, *topology.queues, *topology.bindings, *topology.policies)


def _changed(before: Resource, after: Resource, state: LiveVhost) -> Change:
    """A change of an immutable field replaces the object; any other updates it in place."""
    fields = field_changes(before, after)
    reason = kind_of(after).reason(fields)
    if not any(field.forces_replacement for field in fields):
        return Change(Action.UPDATE, before, after, reason, fields=fields)
    stats = state.stats.get(after.name) if isinstance(after, Queue) else None
    return Change(
        Action.REPLACE,
        before,
        after,
        reason,
        messages=stats.messages if stats else (0 if isinstance(after, Queue) else None),
        consumers=stats.consumers if stats else (0 if isinstance(after, Queue) else None),
        fields=fields,
    )


def _left_alone(resource: Resource, state: LiveVhost, prune: bool) -> Change | Unmanaged | None:
    """A live object the topology does not describe: listed, or deleted with --prune."""
    stats = state.stats.get(resource.name) if isinstance(resource, Queue) else None
    messages = stats.messages if stats else None
    consumers = stats.consumers if stats else None
    if (
        isinstance(resource, Binding)
        and resource.destination_type == "queue"
        and is_migration_queue(resource.destination)
    ):
        return None  # part of the migration, listed with its queue
    if not prune:
        return Unmanaged(resource, "", messages, consumers)
    return Change(Action.DELETE, resource, None, "not in the topology (--prune)", messages, consumers)
