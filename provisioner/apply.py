"""Execution: take the vhost locks and run a Plan in the one order of provisioner.kinds.PHASES.

A converged broker costs one read and nothing else: no lock, no declaration,
no write. Otherwise the vhost lock is taken, the state read again under it,
unsafe changes refused before anything is touched (safety.py), and the plan
run; each kind brings its function per action. Planning is planning.py.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

from provisioner.broker.amqp import Amqp, Operation, OperationFailed
from provisioner.broker.cluster import add_members
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.live import LiveSoon
from provisioner.broker.lock import VhostLock, management_holder_lookup
from provisioner.broker.management import Management
from provisioner.broker.retry import NO_RETRY
from provisioner.errors import BrokerError
from provisioner.kinds import HANDLERS, PHASES
from provisioner.live_state import include_object
from provisioner.options import ApplyOptions
from provisioner.plan import Action, Change, Plan
from provisioner.planning import make_plan, with_exact_counts
from provisioner.profile import phase
from provisioner.safety import check_doors, policy_hint, refuse_unsafe, unfinished_refusal
from provisioner.topology.model import Binding, Exchange, Queue, Topology

# The rooms before execution, importable from here as before the split.
__all__ = [
    "ApplyFailed",
    "ApplyOptions",
    "ApplyReport",
    "Executor",
    "check_doors",
    "converge",
    "make_plan",
    "policy_hint",
    "refuse_unsafe",
    "unfinished_refusal",
    "with_exact_counts",
]

Progress = Callable[[int], None]


@dataclass
class ApplyReport:
    """What an apply did: the plan it ran and how many changes completed."""

    plan: Plan = field(default_factory=Plan)
    done: int = 0
    messages_migrated: int = 0
    amqp_operations: int = 0  # AMQP commands sent (declare, bind, delete...), for the benchmark


class ApplyFailed(BrokerError):
    """The broker refused a change mid-apply; says what had been applied before."""


def converge(
    desired: Topology,
    endpoints: Endpoints,
    management: Management,
    options: ApplyOptions,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    live_soon: LiveSoon | None = None,
) -> ApplyReport:
    """Plan, and when there is anything to do: lock, re-plan under the lock, check, execute.

    ``live_soon`` is a read of the vhosts already under way (broker.live.read_live_soon)
    for the first plan; the plan under the lock always reads again.
    """
    include = options.include_object or include_object
    plan = make_plan(desired, management, options.prune, endpoints, live_soon=live_soon, include=include)
    if plan.problems:
        refuse_unsafe(plan, options)
    if plan.is_empty:
        return ApplyReport(plan)
    refuse_unsafe(plan, options)
    check_doors(plan, endpoints, management)
    executor = Executor(desired, endpoints, management, options, progress)
    vhosts_made = plan.of(Action.CREATE, "vhost")
    for change in vhosts_made:
        executor.run(Action.CREATE, "vhost", (change,))
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
        if on_plan is not None:
            on_plan(whole)
        report = executor.execute(plan)
        report.plan = whole
        return report


class Executor:
    """Runs a plan phase by phase; talks to the broker, nothing else does in an apply."""

    def __init__(
        self,
        desired: Topology,
        endpoints: Endpoints,
        management: Management,
        options: ApplyOptions,
        progress: Progress | None = None,
    ) -> None:
        self.desired, self.endpoints, self.management = desired, endpoints, management
        self.options, self.progress = options, progress
        self.report = ApplyReport()
        self._amqp: dict[str, Amqp] = {}

    def amqp(self, vhost: str) -> Amqp:
        if vhost not in self._amqp:
            self._amqp[vhost] = Amqp(self.endpoints, vhost, self.management.backoff)
        return self._amqp[vhost]

    @property
    def operations_sent(self) -> int:
        return sum(client.operations_sent for client in self._amqp.values())

    def execute(self, plan: Plan) -> ApplyReport:
        self.report.plan = plan
        for action, kind in PHASES:
            changes = plan.of(action, kind)
            if changes:
                with phase("execute"):
                    self.run(action, kind, changes)
        self.report.amqp_operations = self.operations_sent
        self.report.done += add_members(self.management, plan.cluster)
        return self.report

    def run(self, action: Action, kind: str, changes: tuple[Change, ...]) -> None:
        try:
            HANDLERS[(action, kind)](self, changes)
        except OperationFailed as error:
            self.report.done += error.done
            raise ApplyFailed(f"{error} (after {self.report.done} change(s) applied)") from error
        except BrokerError as error:
            raise ApplyFailed(f"{error} (after {self.report.done} change(s) applied)") from error

    def declare_all(self, verb: str, resources: list[Exchange | Queue | Binding]) -> None:
        """Send one AMQP command per object, pipelined per vhost; counts what completed."""
        by_vhost: dict[str, list[Operation]] = {}
        for resource in resources:
            # if-empty guards classic queues; quorum queues refuse it (540), their counts were checked before
            if_empty = not self.options.force and isinstance(resource, Queue) and resource.type == "classic"
            by_vhost.setdefault(resource.vhost, []).append(Operation(verb, resource, if_empty=if_empty))
        for vhost, operations in by_vhost.items():
            self.report.done += self.amqp(vhost).execute(operations, self.options.workers, self.progress)

    def mark_done(self, count: int = 1) -> None:
        """Count changes made through the management API (AMQP commands count themselves)."""
        self.report.done += count
        if self.progress is not None:
            self.progress(count)
