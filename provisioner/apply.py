"""Execute a Plan in the one order of provisioner.kinds.PHASES; each kind brings its function per action.

A converged broker costs one read and nothing else: no lock, no declaration,
no write. Otherwise the vhost lock is taken, the state read again under it,
unsafe changes refused before anything is touched, and the plan run.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

from provisioner.accounts import with_accounts
from provisioner.broker.amqp import DEFAULT_WORKERS, Amqp, Operation, OperationFailed, check_login
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.live import LiveVhost, read_live
from provisioner.broker.lock import VhostLock, management_holder_lookup
from provisioner.broker.management import Management, tag_list
from provisioner.broker.retry import NO_RETRY, Backoff
from provisioner.diff import differences
from provisioner.errors import BrokerError, PlanProblem, UnsafeChange
from provisioner.kinds import HANDLERS, PHASES
from provisioner.plan import Action, Change, Plan
from provisioner.profile import phase
from provisioner.topology.arguments import QUEUE_ARGUMENTS
from provisioner.topology.model import Binding, Exchange, Queue, Topology

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ApplyOptions:
    """What the user allowed: replacements (--migrate), deleting non-empty queues (--force)."""

    prune: bool = False
    migrate: bool = False
    force: bool = False
    workers: int = DEFAULT_WORKERS
    lock_timeout: float = 60.0


@dataclass
class ApplyReport:
    """What an apply did: the plan it ran and how many changes completed."""

    plan: Plan = field(default_factory=Plan)
    done: int = 0
    messages_migrated: int = 0
    amqp_operations: int = 0  # AMQP commands sent (declare, bind, delete...), for the benchmark


class ApplyFailed(BrokerError):
    """The broker refused a change mid-apply; says what had been applied before."""


def make_plan(
    desired: Topology,
    management: Management,
    prune: bool = False,
    endpoints: Endpoints | None = None,
    live_soon: Callable[[Topology | None], dict[str, LiveVhost]] | None = None,
) -> Plan:
    """Read every managed vhost (a constant number of requests each) and diff.

    With ``endpoints``, queues to be replaced, deleted or listed as unmanaged get
    exact message and consumer counts by passive declares (the management API's
    lag by its statistics interval); a plan without such queues costs nothing more.
    ``live_soon`` is a read already under way (broker.live.read_live_soon).
    """
    vhosts = [v.name for v in desired.vhosts]
    with phase("read"):
        live = live_soon(desired) if live_soon is not None else None
        if live is None or set(live) != set(vhosts):
            live = read_live(management, vhosts, desired)
    with phase("compare"):
        plan = differences(desired, live, prune)
        plan = with_accounts(plan, desired, management, prune)
    if endpoints is None:
        return plan
    with phase("counts"):
        return with_exact_counts(plan, endpoints, management.backoff)


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
    return Plan(changes, unmanaged)


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


# Queue arguments a policy can carry instead (x-argument -> policy key): the broker changes those in place.
POLICY_KEYS = {argument.name: argument.policy_key for argument in QUEUE_ARGUMENTS.values() if argument.policy_key}


def policy_hint(change: Change) -> str:
    """For a queue replaced only for arguments a policy can hold: the ``policy:`` that avoids the next one."""
    if change.kind != "queue" or not change.fields:
        return ""
    if any(field.within != "arguments" or field.field not in POLICY_KEYS for field in change.fields):
        return ""  # a property changed too, or an argument no policy can carry: a policy would not avoid it
    settings = ", ".join(
        f"{POLICY_KEYS[field.field]}: {field.after}" for field in change.fields if field.after is not None
    )
    if not settings:
        return ""  # only removals: nothing to move into a policy
    return (
        f"hint: under the queue's `policy: {{{settings}}}` instead of its arguments, this setting changes in place; "
        f"moving it there takes this one migration, later changes none"
    )


def unfinished_refusal(change: Change) -> str:
    """One line: where an interrupted migration's messages wait, and the command that finishes it."""
    parked = change.parked
    assert parked is not None
    held = "its messages" if parked.messages is None else f"{parked.messages} message(s)"
    return (
        f"queue {change.name!r} in {change.vhost!r} is an unfinished migration: {held} and {parked.bindings} "
        f"binding(s) wait in {parked.name!r}; run `provision apply --migrate` with the same files to finish it"
    )


def refuse_unsafe(plan: Plan, options: ApplyOptions) -> None:
    """Raise UnsafeChange naming every change the options do not allow, before anything is touched."""
    if plan.problems:
        raise PlanProblem("; ".join(plan.problems) + "; nothing was changed")
    reasons = []
    for change in plan.of(Action.REPLACE):
        if not options.migrate and change.parked is not None:
            reasons.append(unfinished_refusal(change))
        elif not options.migrate:
            held = f" ({change.messages} messages)" if change.messages else ""
            reasons.append(f"replace {change.kind} {change.name!r} in {change.vhost!r}{held}: {change.reason}")
            hint = policy_hint(change)
            if hint:
                reasons.append(f"  {hint}")
    for change in plan.of(Action.DELETE, "queue"):
        if not options.force and (change.messages or change.consumers):
            reasons.append(
                f"delete queue {change.name!r} in {change.vhost!r}: it holds {change.messages} messages "
                f"and has {change.consumers} consumers"
            )
    if reasons:
        hint = "--migrate replaces without losing messages" if plan.of(Action.REPLACE) else ""
        hint += ("; " if hint else "") + "--force deletes queues that hold messages" if plan.of(Action.DELETE) else ""
        raise UnsafeChange(
            "refusing to apply, nothing was changed:\n  " + "\n  ".join(reasons) + (f"\n({hint})" if hint else "")
        )


def converge(
    desired: Topology,
    endpoints: Endpoints,
    management: Management,
    options: ApplyOptions,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> ApplyReport:
    """Plan, and when there is anything to do: lock, re-plan under the lock, check, execute."""
    plan = make_plan(desired, management, options.prune, endpoints)
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
        plan = make_plan(desired, management, options.prune, endpoints)  # the state may have moved while we waited
        refuse_unsafe(plan, options)
        # the vhosts made before the lock belong to this apply's plan and its report
        whole = replace(plan, changes=vhosts_made + plan.changes)
        if on_plan is not None:
            on_plan(whole)
        report = executor.execute(plan)
        report.plan = whole
        return report


# What the management API needs for the writes a plan holds (reading needs 'management').
WRITE_TAGS = {"vhost": ("administrator",), "policy": ("policymaker", "administrator")} | {
    kind: ("administrator",) for kind in ("user", "permission", "topic_permission", "vhost_limit")
}


def check_doors(plan: Plan, endpoints: Endpoints, management: Management) -> None:
    """Before the first write: AMQP takes the credentials and the management user has the tags the writes need.

    The plan's read already proved the management credentials; this costs one
    AMQP login per vhost and one GET /api/whoami, and writes nothing.
    """
    created = {change.name for change in plan.of(Action.CREATE, "vhost")}
    try:
        for vhost in sorted({change.vhost for change in plan.changes if change.vhost} | created):  # "": users
            check_login(endpoints.amqp_parameters(vhost), management.backoff, vhost_exists=vhost not in created)
        tags = set(tag_list(management.whoami()))
        for kind, allowed in WRITE_TAGS.items():
            if any(change.kind == kind for change in plan.changes) and not tags & set(allowed):
                user = endpoints.management_auth[0]
                raise BrokerError(
                    f"user {user!r} of the management API (tags: {', '.join(sorted(tags)) or 'none'}) may not "
                    f"write the plan's {kind} changes: it needs the {' or '.join(repr(tag) for tag in allowed)} tag"
                )
    except BrokerError as error:
        raise BrokerError(f"{error}; nothing was changed") from None


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
        return self.report

    def run(self, action: Action, kind: str, changes: tuple[Change, ...]) -> None:
        try:
            HANDLERS[(action, kind)](self, changes)
        except OperationFailed as error:
            self.report.done += error.done
            raise ApplyFailed(f"{error} (after {self.report.done} change(s) applied)") from None
        except BrokerError as error:
            raise ApplyFailed(f"{error} (after {self.report.done} change(s) applied)") from None

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
