"""Safety: what apply refuses before it touches anything, read from the plan's structured changes.

Replacements need --migrate, deleting queues that hold messages needs --force,
and the credentials must be able to make every write the plan holds.
"""

from __future__ import annotations

from provisioner.broker.amqp import check_login
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.management import Management, tag_list
from provisioner.errors import BrokerError, PlanProblem, UnsafeChange
from provisioner.kinds import KINDS
from provisioner.options import ApplyOptions
from provisioner.plan import Action, Change, Plan
from provisioner.topology.accounts import VhostLimit
from provisioner.topology.arguments import QUEUE_ARGUMENTS

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
    reasons += _connection_limits_too_low(plan)
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


AMQP_KINDS = ("exchange", "queue", "binding")


def _connection_limits_too_low(plan: Plan) -> list[str]:
    """A vhost limit of 0 or 1 connection that the plan sets would stop its own declarations half-way.

    Apply holds the vhost's lock on one connection and declares on at least one
    more; under such a limit the broker refuses the second after the limit is set.
    """
    reasons = []
    for change in plan.changes:
        if not isinstance(change.after, VhostLimit) or change.name != "max-connections":
            continue
        value = change.after.value
        declares = any(other.kind in AMQP_KINDS and other.vhost == change.vhost for other in plan.changes)
        if isinstance(value, int) and 0 <= value < 2 and declares:
            reasons.append(
                f"vhost {change.vhost!r}: max-connections {value} leaves apply no connection to declare with "
                "(it holds the lock on one and declares on another); apply with a limit of at least 2, "
                "then lower it in a second apply that declares nothing"
            )
    return reasons


# What the management API needs for the writes a plan holds (reading needs 'management').
WRITE_TAGS = (
    {"vhost": ("administrator",), "policy": ("policymaker", "administrator")}
    | {kind: ("administrator",) for kind in ("user", "permission", "topic_permission", "vhost_limit")}
    | {kind.name: kind.write_tags for kind in KINDS.values() if kind.write_tags}
)


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
        raise BrokerError(f"{error}; nothing was changed") from error
