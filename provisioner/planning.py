"""Planning: read the live state, compare, and count exactly what a plan would touch. Writes nothing.

The plan and drift commands stop here; apply goes on to safety.py and the executor.
"""

from __future__ import annotations

from dataclasses import replace

from provisioner.accounts import with_accounts
from provisioner.broker.amqp import Amqp
from provisioner.broker.cluster import read_cluster, with_cluster
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.live import LiveSoon, read_live
from provisioner.broker.management import Management
from provisioner.broker.retry import Backoff
from provisioner.diff import differences
from provisioner.live_state import IncludeObject, include_object
from provisioner.plan import Action, Change, Plan
from provisioner.profile import phase
from provisioner.retain import retain
from provisioner.topology.model import Topology


def make_plan(
    desired: Topology,
    management: Management,
    prune: bool = False,
    endpoints: Endpoints | None = None,
    live_soon: LiveSoon | None = None,
    include: IncludeObject = include_object,
) -> Plan:
    """Read every managed vhost (a constant number of requests each) and diff.

    With ``endpoints``, queues to be replaced, deleted or listed as unmanaged get
    exact message and consumer counts by passive declares (the management API's
    lag by its statistics interval); a plan without such queues costs nothing more.
    ``live_soon`` is a read already under way (broker.live.read_live_soon);
    ``include`` is what of the broker the plan sees (live_state.include_object).
    """
    vhosts = [v.name for v in desired.vhosts]
    with phase("read"):
        live = live_soon(desired, include) if live_soon is not None else None
        if live is None or set(live) != set(vhosts):
            live = read_live(management, vhosts, desired, include)
    with phase("compare"):
        plan = differences(desired, live, prune)
        plan = with_accounts(plan, desired, management, prune)
    retain(live, plan)  # the CLI's process ends without freeing them (retain.py)
    if endpoints is None:
        return plan
    with phase("counts"):
        plan = with_exact_counts(plan, endpoints, management.backoff)
    if endpoints.nodes > 1:  # the URLs name a cluster's nodes: what a node down or a member missing holds back
        plan = with_cluster(plan, desired, read_cluster(management, vhosts))
    return plan


def with_exact_counts(plan: Plan, endpoints: Endpoints, backoff: Backoff) -> Plan:
    """The plan with AMQP's exact counts for every queue it would replace or delete, or lists as unmanaged."""
    wanted: dict[str, list[str]] = {}
    for change in plan.changes:
        if change.kind == "queue" and change.action in (Action.REPLACE, Action.DELETE):
            wanted.setdefault(change.vhost, []).append(change.name)
        if change.parked is not None:
            wanted.setdefault(change.vhost, []).append(change.parked.name)
    for item in plan.unmanaged:
        if item.resource.kind == "queue":
            wanted.setdefault(item.resource.vhost, []).append(item.resource.name)
    if not wanted:
        return plan
    counts = {
        (vhost, name): found
        for vhost, names in wanted.items()
        for name, found in Amqp(endpoints, vhost, backoff).queue_counts(names).items()
    }
    changes = tuple(_counted(change, counts) for change in plan.changes)
    unmanaged = tuple(
        replace(u, messages=counts[key][0], consumers=counts[key][1])
        if u.resource.kind == "queue" and (key := (u.resource.vhost, u.resource.name)) in counts
        else u
        for u in plan.unmanaged
    )
    return replace(plan, changes=changes, unmanaged=unmanaged)  # drift, problems and settings stay


def _counted(change: Change, counts: dict[tuple[str, str], tuple[int, int]]) -> Change:
    """The change with the exact counts of its queue and of the temporary queue it finishes."""
    if change.kind != "queue":
        return change
    if (change.vhost, change.name) in counts:
        found = counts[(change.vhost, change.name)]
        change = replace(change, messages=found[0], consumers=found[1])
    if change.parked is not None and (change.vhost, change.parked.name) in counts:
        found = counts[(change.vhost, change.parked.name)]
        change = replace(change, parked=replace(change.parked, messages=found[0], consumers=found[1]))
    return change
