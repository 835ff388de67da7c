"""Keeping a migration's temporary queue safe from every policy: nothing parked there is limited, expired or dropped.

RabbitMQ applies one user policy to a queue, the matching one of highest
priority. Before the temporary queue is declared, a policy of ours matches it
alone (its exact name) with the highest priority there is, so no user policy
(``.*`` included) reaches it; its definition limits nothing: ``overflow:
reject-publish`` (should any limit still apply, a copy is refused, never a
parked message dropped) and the original queue's dead-letter exchange (a
message whose own ``expiration`` passes while parked goes where it would have
gone). Operator policies apply beside user policies: one that matches the
temporary queue with a limiting key refuses the migration before anything moves.
After the declaration the queue's effective policy is read back and checked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.topology.model import MIGRATE_POLICY_PREFIX

PRIORITY = 2_147_483_647  # the highest a policy can have (a 32-bit signed number on the broker's side)
LIMITING_KEYS = ("max-length", "max-length-bytes", "message-ttl", "expires", "delivery-limit")
APPLIES_TO_QUEUES = ("all", "queues", "classic_queues", "quorum_queues")


def policy_name(temporary: str) -> str:
    """The policy that guards one temporary queue (named by a digest: a queue name may take 255 bytes)."""
    return MIGRATE_POLICY_PREFIX + hashlib.sha256(temporary.encode("utf-8")).hexdigest()[:24]


def is_parking_policy(name: str) -> bool:
    """Whether a live policy is a migration's own: plan never shows it, prune never deletes it."""
    return name.startswith(MIGRATE_POLICY_PREFIX)


def dead_letter_of(original: Mapping[str, Any] | None, policies: Iterable[Mapping[str, Any]] = ()) -> dict[str, str]:
    """The original queue's dead-letter exchange and key (argument first, then its effective policy).

    The management API shows a policy change a statistics round late: right
    after a swap the original may still show our diversion (whose target is the
    temporary queue itself). Then its policy is worked out from ``policies``:
    the user's policy of highest priority that matches it.
    """
    if not original:
        return {}
    arguments = original.get("arguments") or {}
    policy = original.get("effective_policy_definition") or {}
    if is_parking_policy(str(original.get("policy") or "")):
        policy = _matching_policy(policies, str(original.get("name") or ""))
    if not isinstance(policy, Mapping):
        policy = {}
    found = {}
    for argument in ("x-dead-letter-exchange", "x-dead-letter-routing-key"):
        key = argument[2:]  # the policy key is the argument without its x- prefix
        value = arguments.get(argument, policy.get(key))
        if isinstance(value, str):
            found[key] = value
    return found


def _matching_policy(policies: Iterable[Mapping[str, Any]], queue: str) -> Mapping[str, Any]:
    """The definition of the user policy that applies to ``queue`` (highest priority), ours left out."""
    candidates = [p for p in policies if not is_parking_policy(str(p.get("name") or "")) and matches(p, queue)]
    if not candidates:
        return {}
    chosen = max(candidates, key=lambda p: int(p.get("priority") or 0))
    definition = chosen.get("definition") or {}
    return definition if isinstance(definition, Mapping) else {}


def policy_body(
    temporary: str, original: Mapping[str, Any] | None, policies: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Our policy for the temporary queue: its exact name, top priority, a definition that limits nothing."""
    return {
        "pattern": "^" + re.escape(temporary) + "$",
        "apply-to": "queues",
        "priority": PRIORITY,
        "definition": {"overflow": "reject-publish", **dead_letter_of(original, policies)},
    }


def matches(policy: Mapping[str, Any], queue: str) -> bool:
    """Whether a policy's pattern and apply-to reach this queue (a pattern Python cannot read counts as a match)."""
    if policy.get("apply-to", "all") not in APPLIES_TO_QUEUES:
        return False
    try:
        return re.search(str(policy.get("pattern", "")), queue) is not None
    except re.error:
        return True


def limiting_operator_policy(operator_policies: Iterable[Mapping[str, Any]], temporary: str) -> str | None:
    """One line when an operator policy would limit what the temporary queue parks, else None."""
    for policy in operator_policies:
        definition = policy.get("definition") or {}
        keys = [key for key in LIMITING_KEYS if key in definition]
        if keys and matches(policy, temporary):
            settings = ", ".join(f"{key}={definition[key]}" for key in keys)
            return (
                f"operator policy {policy.get('name')!r} (pattern {policy.get('pattern')!r}) sets {settings} on the "
                f"migration's temporary queue {temporary!r} and could drop or expire what is parked there; "
                f"nothing was moved: have it exclude names ending in '.provisioner-migrate' and re-run"
            )
    return None


def rival_policy(policies: Iterable[Mapping[str, Any]], temporary: str) -> str | None:
    """One line when a user policy could apply to the temporary queue instead of ours (equal priority), or None."""
    ours = policy_name(temporary)
    for policy in policies:
        if policy.get("name") != ours and int(policy.get("priority") or 0) >= PRIORITY and matches(policy, temporary):
            return (
                f"policy {policy.get('name')!r} (pattern {policy.get('pattern')!r}) has the highest priority too "
                f"and matches the migration's temporary queue {temporary!r}; nothing was moved: lower its priority"
            )
    return None


def policy_problem(info: Mapping[str, Any] | None, temporary: str) -> str | None:
    """Why the declared temporary queue is not guarded by our policy alone, or None.

    The management API shows a queue's policy only after its next statistics
    round (about a second): an unknown policy (None) is not a problem here, the
    next round of the migration reads it again.
    """
    if info is None:
        return f"the temporary queue {temporary!r} vanished right after it was declared"
    applied = info.get("policy")
    if applied not in (None, "", policy_name(temporary)):
        return f"the temporary queue {temporary!r} runs under policy {applied!r}, not the migration's own"
    operator = info.get("operator_policy")
    definition = info.get("effective_policy_definition") or {}
    limiting = [key for key in LIMITING_KEYS if isinstance(definition, Mapping) and key in definition]
    if operator and limiting:
        return f"the temporary queue {temporary!r} is limited by operator policy {operator!r} ({', '.join(limiting)})"
    return None


# While the old queue is swapped for the new one, what publishers send it by name goes to the temporary queue.
DIVERT_BLOCKERS = ("x-overflow", "x-dead-letter-exchange", "x-dead-letter-routing-key")


def divert_policy_name(queue: str) -> str:
    """The policy that sends what arrives at ``queue`` during its swap to the temporary queue."""
    return MIGRATE_POLICY_PREFIX + hashlib.sha256(b"divert:" + queue.encode("utf-8")).hexdigest()[:24]


def divertible(new_type: str, arguments: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a policy can divert arrivals safely: the new queue is classic (it refuses and dead-letters at
    once, reject-publish-dlx; a quorum queue would take, confirm, then drop and dead-letter at most once), and no
    queue's own arguments set an overflow or a dead-letter target (an argument wins over a policy)."""
    return new_type == "classic" and not any(key in given for given in arguments for key in DIVERT_BLOCKERS)


def divert_body(queue: str, temporary: str) -> dict[str, Any]:
    """Length 0, and what is refused is dead-lettered straight to the temporary queue (default exchange)."""
    return {
        "pattern": "^" + re.escape(queue) + "$",
        "apply-to": "queues",
        "priority": PRIORITY,
        "definition": {
            "max-length": 0,
            "overflow": "reject-publish-dlx",
            "dead-letter-exchange": "",
            "dead-letter-routing-key": temporary,
        },
    }
