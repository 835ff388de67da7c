"""Safety: what apply refuses before it touches anything, read from the plan's structured changes.

Replacements need --migrate; deleting a queue that holds messages (ready or
unacknowledged) and any limit change that would drop or expire messages a queue
holds (limits.py) need --force; the credentials must be able to make every
write the plan holds (``WRITE_TAGS``; doors.py checks them before the first write).
"""

from __future__ import annotations

from provisioner.errors import PlanProblem, UnsafeChange
from provisioner.kinds import KINDS
from provisioner.kinds.accounts import PERMISSION, TOPIC_PERMISSION, USER, VHOST_LIMIT
from provisioner.kinds.binding import BINDING
from provisioner.kinds.exchange import EXCHANGE
from provisioner.kinds.policy import POLICY
from provisioner.kinds.queue import QUEUE
from provisioner.kinds.vhost import VHOST
from provisioner.options import ApplyOptions
from provisioner.plan import Action, Change, Held, Plan
from provisioner.topology.accounts import VhostLimit
from provisioner.topology.arguments import QUEUE_ARGUMENTS

# Queue arguments a policy can carry instead (x-argument -> policy key): the broker changes those in place.
POLICY_KEYS = {argument.name: argument.policy_key for argument in QUEUE_ARGUMENTS.values() if argument.policy_key}


def policy_hint(change: Change) -> str:
    """For a queue replaced only for arguments a policy can hold: the ``policy:`` that avoids the next one."""
    if change.kind != QUEUE.name or not change.fields:
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
    reasons = _replace_reasons(plan, options) + _connection_limits_too_low(plan)
    losing = [] if options.force else _losing_reasons(plan, options)
    if reasons or losing:
        hint = "--migrate replaces without losing messages" if plan.of(Action.REPLACE) and not options.migrate else ""
        if losing:
            hint += ("; " if hint else "") + "--force lets apply delete, drop or expire messages"
        raise UnsafeChange(
            "refusing to apply, nothing was changed:\n  "
            + "\n  ".join(reasons + losing)
            + (f"\n({hint})" if hint else "")
        )


def _replace_reasons(plan: Plan, options: ApplyOptions) -> list[str]:
    """Replacements without --migrate, and unfinished migrations it would leave alone."""
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
    return reasons


def _losing_reasons(plan: Plan, options: ApplyOptions) -> list[str]:
    """What would lose messages: deleting a queue that holds any, migrating unacknowledged ones, tighter limits."""
    reasons = []
    for change in plan.of(Action.DELETE, QUEUE.name):
        held = plan.held_by(change.vhost, change.name)
        if change.messages or change.consumers or (held is not None and not held.sure):
            reasons.append(f"delete queue {change.name!r} in {change.vhost!r}: it holds {_held_text(change, held)}")
    for change in plan.of(Action.REPLACE, QUEUE.name) if options.migrate else ():
        held = plan.held_by(change.vhost, change.name)
        if held is not None and held.unacked:
            reasons.append(
                f"replace queue {change.name!r} in {change.vhost!r}: it holds {held.text()}; a migration moves "
                "ready messages only, and an unacknowledged one returned later would go down with the old queue"
            )
    return reasons + [loss.text() for loss in plan.losses]


def _held_text(change: Change, held: Held | None) -> str:
    """``5 messages (2 ready, 3 unacked), 0 consumers``: what a queue to delete holds."""
    if held is not None:
        return held.text()
    return f"{change.messages} messages, {change.consumers} consumers"


AMQP_KINDS = (EXCHANGE.name, QUEUE.name, BINDING.name)


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
    {VHOST.name: ("administrator",), POLICY.name: ("policymaker", "administrator")}
    | {kind.name: ("administrator",) for kind in (USER, PERMISSION, TOPIC_PERMISSION, VHOST_LIMIT)}
    | {kind.name: kind.write_tags for kind in KINDS.values() if kind.write_tags}
)
