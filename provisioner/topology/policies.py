"""Pure: which policy the broker applies to a queue or exchange, and the settings that result.

The broker's rule: among the policies whose pattern matches the name (an
unanchored regular expression) and whose ``apply-to`` fits the object, the one
with the highest priority applies; only one policy applies at a time. The
highest-priority matching operator policy is combined with it: for a key both
set, the stricter (smaller) number wins; keys only the operator policy sets
apply as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from provisioner.patterns import compiled
from provisioner.topology.model import Policy

# apply-to values and the objects they reach (3.12 added the per-queue-type ones).
APPLIES_TO: dict[str, frozenset[str]] = {
    "all": frozenset({"exchange", "classic", "quorum", "stream"}),
    "queues": frozenset({"classic", "quorum", "stream"}),
    "exchanges": frozenset({"exchange"}),
    "classic_queues": frozenset({"classic"}),
    "quorum_queues": frozenset({"quorum"}),
    "streams": frozenset({"stream"}),
}


@dataclass(frozen=True)
class Effective:
    """The policy and operator policy the broker applies to one object, and their combined settings."""

    policy: str | None = None
    operator_policy: str | None = None
    definition: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "operator_policy": self.operator_policy, "definition": self.definition}


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    return compiled(pattern)  # None: the broker refuses such a policy; broker_checks.py reports it


def matches(policy: Policy, target: str, name: str) -> bool:
    """Whether ``policy`` reaches the object: ``target`` is "exchange" or the queue's type."""
    if target not in APPLIES_TO.get(policy.apply_to, frozenset()):
        return False
    pattern = _compiled(policy.pattern)
    return pattern is not None and pattern.search(name) is not None


_LITERAL = re.compile(r"\^((?:[^\\.^$*+?()\[\]{}|]|\\[^A-Za-z0-9])*)\$")


class PolicySet:
    """Policies indexed for lookup: ``^name$`` patterns (a queue's own policy) by name, the rest scanned.

    Without the index a topology of N queues with a policy each costs N x N
    regular-expression searches.
    """

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        self.exact: dict[str, list[Policy]] = {}
        self.other: list[Policy] = []
        for policy in policies:
            literal = _LITERAL.fullmatch(policy.pattern)
            if literal is None:
                self.other.append(policy)
            else:
                self.exact.setdefault(re.sub(r"\\(.)", r"\1", literal.group(1)), []).append(policy)

    def is_empty(self) -> bool:
        """Whether no policy is here: such a set reaches nothing, so callers may skip the lookup."""
        return not self.exact and not self.other

    def winner(self, target: str, name: str) -> Policy | None:
        """The matching policy of highest priority (ties: the first by name), or None."""
        exact = self.exact.get(name)
        if exact is None and not self.other:
            return None  # the common case of a queue in a vhost of own policies only: no list, no sort
        found = [p for p in exact or () if target in APPLIES_TO.get(p.apply_to, frozenset())]
        found += [p for p in self.other if matches(p, target, name)]
        return min(found, key=lambda p: (-p.priority, p.name)) if found else None


def effective(
    target: str, name: str, policies: PolicySet | Iterable[Policy], operator_policies: PolicySet | Iterable[Policy] = ()
) -> Effective:
    """What the broker applies to one object: its policy, its operator policy, their combined definition."""
    policy = _as_set(policies).winner(target, name)
    operator = _as_set(operator_policies).winner(target, name)
    if operator is None:
        return Effective(policy.name, None, dict(sorted(policy.definition.items()))) if policy else Effective()
    definition = dict(policy.definition) if policy else {}
    for key, value in operator.definition.items():
        current = definition.get(key)
        if _number(current) and _number(value):
            definition[key] = min(current, value)
        else:
            definition[key] = value
    return Effective(
        policy.name if policy else None,
        operator.name,
        dict(sorted(definition.items())),
    )


def _as_set(policies: PolicySet | Iterable[Policy]) -> PolicySet:
    return policies if isinstance(policies, PolicySet) else PolicySet(policies)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
