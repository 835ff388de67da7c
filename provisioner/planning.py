"""Planning: read the live state once (refresh), compare once, and count exactly what a plan would touch.

Writes nothing. refresh() reads everything the comparison needs into one LiveState; compare() is pure and
orders the plan once; only what the plan's writes alone need (version notes, counts) is read after it.

The plan and drift commands stop here; apply goes on to safety.py and the executor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from provisioner.accounts import with_account_changes
from provisioner.broker.accounts import read_accounts
from provisioner.broker.amqp import Amqp
from provisioner.broker.cluster import ClusterState, deletes_a_quorum_queue, read_cluster, with_cluster
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.held import read_held
from provisioner.broker.live import LiveSoon, read_live
from provisioner.broker.management import Management, ManagementError
from provisioner.diff import differences
from provisioner.kinds import in_phase_order
from provisioner.kinds.queue import QUEUE
from provisioner.limits import limit_changes, losses
from provisioner.live_state import IncludeObject, LiveVhost, include_object
from provisioner.parameters.broker import read_parameters
from provisioner.parameters.compare import LiveParameters, with_parameter_changes
from provisioner.plan import Action, Change, Held, Plan, Unmanaged
from provisioner.profile import phase
from provisioner.protected import may_protect, touched_queues, without_protected
from provisioner.retain import retain
from provisioner.topology.accounts import LiveAccounts
from provisioner.topology.model import Topology
from provisioner.version_notes import with_version_notes


@dataclass(frozen=True)
class LiveState:
    """Everything a plan compares, read before anything is compared: the vhosts, parameter kinds and accounts."""

    vhosts: dict[str, LiveVhost]
    parameters: LiveParameters | None = None  # None: the topology has no parameter kinds, nothing was read
    accounts: LiveAccounts | None = None  # None: the topology manages no accounts, nothing was read
    protected: frozenset[str] = frozenset()  # the users provisioner connects as: never pruned


def refresh(
    desired: Topology, management: Management, include: IncludeObject, live_soon: LiveSoon | None = None
) -> LiveState:
    """Read what the topology owns: each vhost (a constant number of requests), then its parameters and accounts.

    ``live_soon`` is a read of the vhosts already under way (broker.live.read_live_soon).
    """
    vhosts = [v.name for v in desired.vhosts]
    live = live_soon(desired, include) if live_soon is not None else None
    if live is None or set(live) != set(vhosts):
        live = read_live(management, vhosts, desired, include)
    accounts = desired.accounts
    endpoints = management.endpoints
    return LiveState(
        live,
        None if accounts.parameters.is_empty else read_parameters(management, accounts.parameters),
        None if accounts.is_empty else read_accounts(management, accounts, vhosts),
        frozenset({endpoints.amqp_user, endpoints.management_auth[0]}),
    )


def compare(desired: Topology, state: LiveState, prune: bool) -> Plan:
    """Pure: the desired topology x the live state -> the plan's changes, ordered once, in phase order."""
    plan = differences(desired, state.vhosts, prune)
    accounts = desired.accounts
    if state.parameters is not None:
        plan = with_parameter_changes(plan, accounts.parameters, state.parameters, prune)
    if state.accounts is not None:
        plan = with_account_changes(plan, accounts, state.accounts, prune, state.protected)
    return replace(plan, changes=in_phase_order(plan.changes))  # the diff's order within each phase stays


def make_plan(
    desired: Topology,
    management: Management,
    prune: bool = False,
    endpoints: Endpoints | None = None,
    live_soon: LiveSoon | None = None,
    include: IncludeObject = include_object,
) -> Plan:
    """Read (refresh), compare once, then what only the plan's writes need to know. Writes nothing.

    With ``endpoints``, queues to be replaced, deleted, listed as unmanaged or whose
    limits change get their ready and unacknowledged counts (with_exact_counts);
    a plan without such queues costs nothing more.
    ``live_soon`` is a read already under way (broker.live.read_live_soon);
    ``include`` is what of the broker the plan sees (live_state.include_object).
    """
    with phase("read"):
        state = refresh(desired, management, include, live_soon)
    live = state.vhosts
    with phase("compare"):
        plan = compare(desired, state, prune)
        plan = with_version_notes(plan, desired, live, management)  # reads only what the plan's writes need
        version = next((vhost.version for vhost in live.values() if vhost.version), "")
        plan = replace(plan, limits=limit_changes(plan, live, version))
    plan = _without_protected_queues(plan, live, management)
    retain(live, plan)  # the CLI's process ends without freeing them (retain.py)
    if endpoints is None:
        return plan
    with phase("counts"):
        plan = with_exact_counts(plan, endpoints, management)
    if endpoints.nodes > 1:  # the URLs name a cluster's nodes: what a node down or a member missing holds back
        plan = with_cluster(plan, desired, read_cluster(management, [v.name for v in desired.vhosts]))
    elif any(deletes_a_quorum_queue(change) for change in plan.changes):
        plan = with_cluster(plan, desired, _cluster_if_listed(management, desired))  # a lost node's consumer
    return plan


def _without_protected_queues(plan: Plan, live: dict[str, LiveVhost], management: Management) -> Plan:
    """The plan that leaves the broker's protected queues alone: one request per vhost where it would delete
    or replace a queue (or a queue's binding) on a broker that may protect queues, none elsewhere."""
    touched = {
        vhost: names
        for vhost, names in touched_queues(plan).items()
        if vhost in live and may_protect(live[vhost].version)
    }
    protected = {
        (vhost, name): owner
        for vhost, names in sorted(touched.items())
        for name, owner in management.protected_queues(vhost).items()
        if name in names
    }
    return without_protected(plan, protected)


def _cluster_if_listed(management: Management, desired: Topology) -> ClusterState | None:
    """The cluster, read through one node; None where this user may not list nodes (no monitoring tag)."""
    try:
        return read_cluster(management, [v.name for v in desired.vhosts])
    except ManagementError:
        return None


def with_exact_counts(plan: Plan, endpoints: Endpoints, management: Management) -> Plan:
    """The plan with what every queue it touches holds (broker/held.py), and what its limits would lose.

    Touched: queues it would replace or delete, temporary queues it finishes and
    queues whose limits it changes: one management request per vhost with such
    queues for their totals (two where a byte limit changes: sizes come from the
    statistics), and passive declares on one AMQP connection for quorum queues,
    streams and the queues whose consumers count (replaced, deleted, listed).
    Unmanaged queues it only lists get their ready count from a passive declare.
    """
    wanted, listed = _touched(plan), _listed(plan)
    sized = {limit.vhost for limit in plan.limits if limit.key in ("max-length-bytes", "overflow")}
    held: dict[tuple[str, str], Held] = {}
    for vhost, names in sorted(wanted.items()):
        shown = listed.pop(vhost, [])
        names += [name for name in shown if name not in names]  # one connection serves both
        changed = _replaced_or_deleted(plan, vhost)  # their consumers count too: a passive declare each
        found = read_held(endpoints, management, vhost, names, vhost in sized, changed | set(shown), settle=changed)
        undecided = _undecided(plan, vhost, found)  # quorum queues whose loss turns on their unacked
        if undecided:
            found |= read_held(endpoints, management, vhost, undecided, vhost in sized, undecided)
        held |= {(vhost, name): item for name, item in found.items()}
    ready = {
        (vhost, name): found
        for vhost, names in sorted(listed.items())
        for name, found in Amqp(endpoints, vhost, management.backoff).queue_counts(names).items()
    }
    if not held and not ready:
        return plan
    changes = tuple(_counted(change, held) for change in plan.changes)
    unmanaged = tuple(_listed_count(u, held, ready) for u in plan.unmanaged)
    touching = _changed_queues(plan)
    touched = tuple(held[key] for key in sorted(held) if key in touching)
    return replace(plan, changes=changes, unmanaged=unmanaged, held=touched, losses=losses(plan.limits, held))


def _undecided(plan: Plan, vhost: str, found: dict[str, Held]) -> list[str]:
    """Quorum queues with holders whose limit changes lose nothing with the unacked count of the last
    tick, but would with more: only they wait for a newer tick (a whole one at worst)."""
    undecided = []
    for name, count in found.items():
        if count.type != "quorum" or not count.consumers:
            continue
        limits = [limit for limit in plan.limits if limit.vhost == vhost and limit.queue == name]
        many = replace(count, unacked=count.unacked + 2**62)
        if not losses(limits, {(vhost, name): count}) and losses(limits, {(vhost, name): many}):
            undecided.append(name)
    return undecided


def _replaced_or_deleted(plan: Plan, vhost: str) -> set[str]:
    """The queues of a vhost the plan replaces or deletes, and the temporary queues it finishes."""
    here = [c for c in plan.changes if c.vhost == vhost]
    names = {c.name for c in here if c.kind == QUEUE.name and c.action is not Action.CREATE}
    return names | {c.parked.name for c in here if c.parked is not None}


def _listed(plan: Plan) -> dict[str, list[str]]:
    """Unmanaged queues a plan lists, by vhost: shown with their counts, touched by no change."""
    listed: dict[str, list[str]] = {}
    for item in plan.unmanaged:
        if item.resource.kind == QUEUE.name:
            listed.setdefault(item.resource.vhost, []).append(item.resource.name)
    return listed


def _listed_count(
    item: Unmanaged, held: dict[tuple[str, str], Held], ready: dict[tuple[str, str], tuple[int, int]]
) -> Unmanaged:
    key = (item.resource.vhost, item.resource.name)
    if item.resource.kind != QUEUE.name:
        return item
    if key in held:
        found = held[key]
        return replace(item, messages=found.messages, consumers=found.consumers, unacked=found.unacked)
    if key in ready:
        return replace(item, messages=ready[key][0], consumers=ready[key][1])  # ready only: nothing changes it
    return item


def _changed_queues(plan: Plan) -> set[tuple[str, str]]:
    """(vhost, queue) of every queue a change touches: replaced, deleted, or its limits changed."""
    keys = {
        (c.vhost, c.name) for c in plan.changes if c.kind == QUEUE.name and c.action in (Action.REPLACE, Action.DELETE)
    }
    return keys | {(limit.vhost, limit.queue) for limit in plan.limits}


def _touched(plan: Plan) -> dict[str, list[str]]:
    """The queues to count, by vhost, in plan order."""
    wanted: dict[str, list[str]] = {}
    names = [(vhost, name) for vhost, name in sorted(_changed_queues(plan))]
    names += [(c.vhost, c.parked.name) for c in plan.changes if c.parked is not None]
    for vhost, name in names:
        if name not in wanted.setdefault(vhost, []):
            wanted[vhost].append(name)
    return wanted


def _counted(change: Change, held: dict[tuple[str, str], Held]) -> Change:
    """The change with what its queue and the temporary queue it finishes hold."""
    if change.kind != QUEUE.name:
        return change
    found = held.get((change.vhost, change.name))
    if found is not None:
        change = replace(change, messages=found.messages, consumers=found.consumers, unacked=found.unacked)
    parked = held.get((change.vhost, change.parked.name)) if change.parked is not None else None
    if change.parked is not None and parked is not None:
        change = replace(change, parked=replace(change.parked, messages=parked.messages, consumers=parked.consumers))
    return change
