"""Apply: take the vhost locks and run a Plan through the executor (executor.py) and its handlers (handlers/).

A converged broker costs one read and nothing else: no lock, no declaration,
no write. Otherwise the vhost lock is taken, the state read again under it,
unsafe changes refused before anything is touched (safety.py), and the plan
run; provisioner/handlers/ holds the writer of each (action, kind). Planning is planning.py.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace

from provisioner import handlers  # fills the executor's table (HANDLERS) with each (action, kind)'s writer
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.live import LiveSoon
from provisioner.broker.lock import VhostLock, management_holder_lookup
from provisioner.broker.management import Management
from provisioner.broker.retry import NO_RETRY
from provisioner.doors import AmqpDoor, check_doors, first_vhost
from provisioner.executor import ApplyFailed, ApplyReport, Executor, Progress
from provisioner.kinds.vhost import VHOST
from provisioner.live_state import include_object
from provisioner.options import ApplyOptions
from provisioner.plan import Action, Plan
from provisioner.planning import make_plan, with_exact_counts
from provisioner.safety import policy_hint, refuse_unsafe, unfinished_refusal
from provisioner.topology.model import Topology

# The rooms before execution, importable from here as before the split.
__all__ = [
    "ApplyFailed",
    "ApplyOptions",
    "ApplyReport",
    "Executor",
    "Progress",
    "check_doors",
    "converge",
    "handlers",
    "make_plan",
    "policy_hint",
    "refuse_unsafe",
    "unfinished_refusal",
    "with_exact_counts",
]


def converge(
    desired: Topology,
    endpoints: Endpoints,
    management: Management,
    options: ApplyOptions,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    live_soon: LiveSoon | None = None,
    confirm: Callable[[Plan], None] | None = None,
) -> ApplyReport:
    """Plan, and when there is anything to do: lock, re-plan under the lock, check, execute.

    ``live_soon`` is a read of the vhosts already under way (broker.live.read_live_soon)
    for the first plan; the plan under the lock always reads again. ``confirm`` sees the
    plan before the first write and again under the lock, and raises to stop (a person's "no").
    """
    include = options.include_object or include_object
    tried = first_vhost(desired)  # the AMQP login runs while the plan reads; the read proves the management door
    door = AmqpDoor(endpoints, tried, management.backoff) if tried is not None else None
    plan = make_plan(desired, management, options.prune, endpoints, live_soon=live_soon, include=include)
    if door is not None:
        door.wait()  # one connection at a time from here on
    if plan.problems:
        refuse_unsafe(plan, options)
    if plan.is_empty:
        if door is not None:
            door.verdict(plan)
        return ApplyReport(plan)
    refuse_unsafe(plan, options)
    check_doors(plan, endpoints, management)
    if confirm is not None:
        confirm(plan)
    executor = Executor(desired, endpoints, management, options, progress)
    vhosts_made = plan.of(Action.CREATE, VHOST.name)
    for change in vhosts_made:
        executor.run(Action.CREATE, VHOST.name, (change,))
    with ExitStack() as locks:
        for vhost in desired.vhosts:
            parameters = endpoints.amqp_parameters(vhost.name)
            lookup = management_holder_lookup(Management(endpoints, timeout=5.0, backoff=NO_RETRY))
            lock = VhostLock(parameters, options.lock_timeout, lookup=lookup, backoff=management.backoff)
            locks.enter_context(lock)
        plan = make_plan(
            desired, management, options.prune, endpoints, include=include
        )  # the state may have moved while we waited
        refuse_unsafe(plan, options)
        # the vhosts made before the lock belong to this apply's plan and its report
        whole = replace(plan, changes=vhosts_made + plan.changes)
        if confirm is not None:
            confirm(whole)
        if on_plan is not None:
            on_plan(whole)
        report = executor.execute(plan)
        report.plan = whole
        return report
