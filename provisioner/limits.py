"""Pure: which settings that can drop or expire messages a plan changes, on which queues, and what that loses.

Families: length (max-length), bytes (max-length-bytes), message TTL
(message-ttl), queue expiry (expires), overflow, delivery limit (quorum) and a
stream's retention (max-length-bytes, max-age), and dead-lettering (a
dead-letter exchange removed). Each may come from a queue's
argument (changed by replacing the queue, apply --migrate), a policy or an
operator policy (changed in place by a plain apply). ``limit_changes`` reads
them from the plan's structured changes; ``losses`` checks them against what
the queues hold, so the mover can ask again with newer counts mid-move.

While a migration moves messages, ``effective_limits`` and ``breach`` ask the
same question of one queue as the broker holds it: its arguments and
effective policy, the destination's count plus what is still to move.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.drift import DEFAULT_DELIVERY_LIMIT_4X, major_version
from provisioner.kinds.policy import POLICY
from provisioner.kinds.queue import QUEUE
from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.live_state import LiveVhost
from provisioner.plan import Action, Change, Held, LimitChange, Loss, Plan
from provisioner.topology.model import MIGRATE_SUFFIX, Key, OperatorPolicy, Policy, Queue
from provisioner.topology.policies import PolicySet, effective


@dataclass(frozen=True)
class Family:
    """One setting that can drop or expire messages: its policy key, its argument, where it acts."""

    key: str
    argument: str
    types: frozenset[str]
    smallest_wins: bool = True  # numbers: the broker applies the smallest of argument and policies


NOT_STREAM, ANY = frozenset({"classic", "quorum"}), frozenset({"classic", "quorum", "stream"})
FAMILIES = (
    Family("max-length", "x-max-length", NOT_STREAM),
    Family("max-length-bytes", "x-max-length-bytes", ANY),
    Family("message-ttl", "x-message-ttl", NOT_STREAM),
    Family("expires", "x-expires", NOT_STREAM),
    Family("overflow", "x-overflow", NOT_STREAM, smallest_wins=False),  # the argument wins over policies
    Family("delivery-limit", "x-delivery-limit", frozenset({"quorum"})),
    Family("max-age", "x-max-age", frozenset({"stream"})),
    Family("dead-letter-exchange", "x-dead-letter-exchange", NOT_STREAM, smallest_wins=False),
)
FAMILY = {family.key: family for family in FAMILIES}
LIMIT_KINDS = (POLICY.name, OPERATOR_POLICY.name)
Setting = tuple[Any, str]  # (value, who sets it)


def queue_limits(queue: Queue, policies: PolicySet, operators: PolicySet, version: str = "") -> dict[str, Setting]:
    """Each family's value on a queue, and who sets it, as the broker combines argument and policies.

    Other keys of the policies that apply come along as they are: a change of
    one is no loss, but the plan shows the counts of the queues it reaches.
    """
    applied = effective(queue.type, queue.name, policies, operators)
    operator = operators.winner(queue.type, queue.name)
    found: dict[str, Setting] = {}
    for family in FAMILIES:
        if queue.type not in family.types:
            continue
        candidates = []
        if queue.arguments.get(family.argument) is not None:
            candidates.append((queue.arguments[family.argument], f"argument {family.argument}"))
        if family.key in applied.definition:
            by_operator = operator is not None and operator.definition.get(family.key) == applied.definition[family.key]
            owner = f"operator policy {applied.operator_policy!r}" if by_operator else f"policy {applied.policy!r}"
            candidates.append((applied.definition[family.key], owner))
        found[family.key] = _combined(family, candidates)
    if queue.type == "quorum":
        found["delivery-limit"] = _delivery_limit(found["delivery-limit"], version)
    if "overflow" in found and found["overflow"][0] is None:
        found["overflow"] = ("drop-head", "the default")
    for key, value in applied.definition.items():  # any other setting: the plan shows the queue's counts
        if key not in found:
            by_operator = operator is not None and key in operator.definition
            found[key] = (
                value,
                f"operator policy {applied.operator_policy!r}" if by_operator else f"policy {applied.policy!r}",
            )
    return found


def _combined(family: Family, candidates: list[Setting]) -> Setting:
    if not candidates:
        return (None, "nothing")
    if not family.smallest_wins:
        return candidates[0]  # the argument when there is one
    numbers: list[tuple[int, Any, str]] = []
    for value, owner in candidates:
        magnitude = _magnitude(value)
        if magnitude is not None:
            numbers.append((magnitude, value, owner))
    if not numbers:
        return candidates[0]
    _, value, owner = min(numbers, key=lambda item: item[0])
    return (value, owner)


def _delivery_limit(setting: Setting, version: str) -> Setting:
    value, owner = setting
    if isinstance(value, int) and value < 0:
        return (None, f"{owner} (negative: unlimited)")
    if value is None and major_version(version) >= 4:
        return (DEFAULT_DELIVERY_LIMIT_4X, "the broker's default on 4.x")
    return setting


_AGE = re.compile(r"([0-9]+)([YMDhms])")
_AGE_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def _magnitude(value: Any) -> int | None:
    """A limit as a number to compare: integers as they are, a stream's max-age (``7D``) in seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (found := _AGE.fullmatch(value)):
        return int(found.group(1)) * _AGE_SECONDS[found.group(2)]
    return None


def limit_changes(plan: Plan, live: Mapping[str, LiveVhost], version: str = "") -> tuple[LimitChange, ...]:
    """Every family whose value changes on a live queue, with the change of the plan that changes it."""
    found: list[LimitChange] = []
    for vhost, state in sorted(live.items()):
        mine = [c for c in plan.changes if c.vhost == vhost and (c.kind in LIMIT_KINDS or _replaced_queue(c))]
        if state.exists and mine:
            found += _vhost_limit_changes(state, mine, version)
    return tuple(found)


def _replaced_queue(change: Change) -> bool:
    return change.kind == QUEUE.name and change.action is Action.REPLACE and change.before is not None


def _vhost_limit_changes(state: LiveVhost, changes: list[Change], version: str) -> list[LimitChange]:
    before = [p for p in state.topology.policies]
    after = {p.key: p for p in before}
    for policy_change in changes:
        if policy_change.kind in LIMIT_KINDS:
            after.pop(policy_change.key, None)
            if policy_change.after is not None:
                after[policy_change.key] = _as_policy(policy_change.after)
    sets_before, sets_after = _sets(before), _sets(after.values())
    replaced = {c.name: c for c in changes if c.kind == QUEUE.name}
    found = []
    for queue in sorted(state.topology.queues, key=lambda q: q.name):
        if queue.name.endswith(MIGRATE_SUFFIX):  # a migration in progress: its own rule (below) guards it
            continue
        change = replaced.get(queue.name)
        target = change.after if change is not None and isinstance(change.after, Queue) else queue
        old = queue_limits(queue, *sets_before, version)
        new = queue_limits(target, *sets_after, version)
        for key in (key for key in new if new[key][0] != old.get(key, (None, ""))[0]):
            by = _responsible(new[key][1], old.get(key, (None, ""))[1], change, changes)
            found.append(
                LimitChange(
                    state.name,
                    queue.name,
                    key,
                    old.get(key, (None, ""))[0],
                    new[key][0],
                    new[key][1],
                    by,
                    str(new.get("overflow", ("drop-head", ""))[0]),
                    _numbers(new),
                )
            )
    return found


def _as_policy(resource: Any) -> Policy:
    """A policy as the plan holds it: a Policy, or an operator policy's parameter (its value as the API has it)."""
    if isinstance(resource, Policy):
        return resource
    value = resource.value
    return OperatorPolicy(
        resource.vhost, resource.name, value["pattern"], dict(value["definition"]), value["apply-to"], value["priority"]
    )


def _sets(policies: Iterable[Policy]) -> tuple[PolicySet, PolicySet]:
    listed = list(policies)
    return (
        PolicySet([p for p in listed if not isinstance(p, OperatorPolicy)]),
        PolicySet([p for p in listed if isinstance(p, OperatorPolicy)]),
    )


def _numbers(settings: dict[str, Setting]) -> tuple[tuple[str, Any], ...]:
    return tuple((key, value) for key, (value, _) in sorted(settings.items()))


def _responsible(source_after: str, source_before: str, replace: Change | None, changes: list[Change]) -> Key:
    """The key of the change behind a new value: the queue's replacement, or the policy named on either side."""
    if replace is not None and source_after.startswith("argument"):
        return replace.key
    for source in (source_after, source_before):
        for change in changes:
            if change.kind in LIMIT_KINDS and source.endswith(f" {change.name!r}"):
                return change.key
    if replace is not None:
        return replace.key
    return next(change.key for change in changes if change.kind in LIMIT_KINDS)


def losses(limits: Iterable[LimitChange], held: Mapping[tuple[str, str], Held]) -> tuple[Loss, ...]:
    """The limit changes that would drop or expire messages the queues hold (the rule behind --force)."""
    found = []
    for limit in limits:
        count = held.get((limit.vhost, limit.queue))
        if count is None or count.messages == 0:
            continue  # nothing held (or not counted: a plan made without AMQP)
        rule = RULES.get(limit.key)
        what = rule(limit, count) if rule is not None else ""
        if what:
            found.append(Loss(limit, count, what))
    return tuple(found)


def _tighter(limit: LimitChange) -> bool:
    after, before = _magnitude(limit.after), _magnitude(limit.before)
    return after is not None and (before is None or after < before)


def _length(limit: LimitChange, held: Held) -> str:
    if not _tighter(limit) or limit.overflow != "drop-head" or held.messages <= limit.after:
        return ""
    return f"drops the oldest {held.messages - limit.after} (overflow drop-head keeps {limit.after})"


def _bytes(limit: LimitChange, held: Held) -> str:
    if not _tighter(limit) or (limit.overflow != "drop-head" and held.type != "stream"):
        return ""
    if held.bytes is None:
        return f"drops the oldest beyond {limit.after} bytes (their size is unknown: the broker keeps no statistics)"
    if held.bytes <= limit.after:
        return ""
    return f"drops the oldest until {limit.after} of their {held.bytes} bytes remain"


def _overflow(limit: LimitChange, held: Held) -> str:
    if limit.after != "drop-head":
        return ""  # reject-publish modes refuse new messages; those held stay
    settings = dict(limit.settings)
    length, size = settings.get("max-length"), settings.get("max-length-bytes")
    if isinstance(length, int) and held.messages > length:
        return f"drops the oldest {held.messages - length} (max-length {length})"
    if isinstance(size, int) and (held.bytes is None or held.bytes > size):
        return f"drops the oldest beyond max-length-bytes {size}"
    return ""


def _expiry(what: str) -> Any:
    def rule(limit: LimitChange, held: Held) -> str:
        return what.format(after=limit.after) if _tighter(limit) else ""

    return rule


def _in_place(rule: Any) -> Any:
    """A rule for a limit a migration brings where there was none (a classic queue becoming a quorum
    queue): moved messages start from 0 deliveries there. Lowered on a quorum queue it counts either way."""

    def in_place(limit: LimitChange, held: Held) -> str:
        return "" if limit.by[0] == QUEUE.name and limit.before is None else rule(limit, held)

    return in_place


def _dead_letters(limit: LimitChange, held: Held) -> str:
    if limit.after is not None or limit.before is None:
        return ""
    return f"drops what expires, overflows or is rejected instead of dead-lettering it to {limit.before!r}"


RULES = {
    "max-length": _length,
    "max-length-bytes": _bytes,
    "overflow": _overflow,
    "message-ttl": _expiry("can expire (or dead-letter) those older than {after} ms"),
    "expires": _expiry("deletes the queue with them once unused for {after} ms"),
    "delivery-limit": _in_place(_expiry("drops (or dead-letters) those returned {after} times")),
    "max-age": _expiry("truncates the stream's segments older than {after}"),
    "dead-letter-exchange": _dead_letters,
}


@dataclass(frozen=True)
class Limit:
    """One limit in force: its value and the name it is set by (an argument or a policy key)."""

    name: str
    value: int


@dataclass(frozen=True)
class Limits:
    """The limits of a queue that can drop or expire what a move puts there."""

    max_length: Limit | None = None
    max_bytes: Limit | None = None
    ttl: Limit | None = None
    overflow: str = "drop-head"
    dead_letter: bool = False  # a dead-letter exchange catches what is dropped or expired


def _lower(key: str, arguments: Mapping[str, Any], policy: Mapping[str, Any]) -> Limit | None:
    """The smaller of a family's argument and policy value (the broker applies the lower of two numbers)."""
    argument = FAMILY[key].argument
    found = []
    if isinstance(arguments.get(argument), int) and not isinstance(arguments.get(argument), bool):
        found.append(Limit(argument, int(arguments[argument])))
    if isinstance(policy.get(key), int) and not isinstance(policy.get(key), bool):
        found.append(Limit(f"policy {key}", int(policy[key])))
    return min(found, key=lambda limit: limit.value) if found else None


def effective_limits(arguments: Mapping[str, Any], policy: Mapping[str, Any]) -> Limits:
    """The limits in force: the lower number of argument and policy; an argument's overflow and DLX come first."""
    return Limits(
        max_length=_lower("max-length", arguments, policy),
        max_bytes=_lower("max-length-bytes", arguments, policy),
        ttl=_lower("message-ttl", arguments, policy),
        overflow=str(arguments.get("x-overflow") or policy.get("overflow") or "drop-head"),
        dead_letter=bool(arguments.get("x-dead-letter-exchange") or policy.get("dead-letter-exchange")),
    )


def breach(queue: str, limits: Limits, count: int, size: int | None) -> str | None:
    """Why ``count`` messages of ``size`` bytes in all (None: unknown) would not all stay in ``queue``, or None."""
    if limits.max_length is not None and count > limits.max_length.value:
        return _over(queue, limits, limits.max_length, f"{count} messages")
    if limits.max_bytes is not None and count and size is None:
        limit, fate = limits.max_bytes, _fate(limits)
        return (
            f"queue {queue!r}: {count} messages of unknown size to hold (the broker keeps no statistics), under its "
            f"{limit.name} {limit.value}; those beyond it would be {fate}"
        )
    if limits.max_bytes is not None and size is not None and size > limits.max_bytes.value:
        return _over(queue, limits, limits.max_bytes, f"{size} bytes of messages")
    if limits.ttl is not None and count and not limits.dead_letter:
        return (
            f"queue {queue!r}: {limits.ttl.name} {limits.ttl.value} would expire the {count} messages unread "
            f"after {limits.ttl.value} ms with no dead-letter exchange to catch them"
        )
    return None


def _fate(limits: Limits) -> str:
    return "refused by the broker" if limits.overflow.startswith("reject-publish") else "dropped"


def _over(queue: str, limits: Limits, limit: Limit, held: str) -> str:
    return (
        f"queue {queue!r}: {held} to hold, more than its {limit.name} {limit.value}; the excess would be "
        f"{_fate(limits)}"
    )
