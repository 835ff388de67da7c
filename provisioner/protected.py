"""Pure: queues the broker protects (RabbitMQ 4.1+, a plugin's own) are never deleted or replaced by a plan.

A protected queue has an internal owner (an exchange, say) and the broker
refuses to delete it but with its owner (405 RESOURCE_LOCKED), so a plan that
pruned it would stop apply half-way. Its deletion, and the deletion of its
bindings, become unmanaged lines that say whose it is; a replacement (the
topology names it with other properties) is a problem apply refuses to start with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from provisioner.kinds.binding import BINDING
from provisioner.kinds.queue import QUEUE
from provisioner.plan import Action, Change, Plan, Unmanaged
from provisioner.topology.model import Binding
from provisioner.topology.verdicts import parse_version

PROTECTED_SINCE = (4, 1)  # the first RabbitMQ with protected (internal-owner) queues

Protected = Mapping[tuple[str, str], str]  # (vhost, queue) -> its owner ("exchange 'amq.default'")


def may_protect(version: str) -> bool:
    """Whether a broker of this version may hold protected queues (unknown: no)."""
    parsed = parse_version(version)
    return parsed is not None and parsed >= PROTECTED_SINCE


def owner_text(owner: Any) -> str:
    """``exchange 'amq.default'``: a protected queue's owner (its ``internal_owner``) as the broker names it."""
    if isinstance(owner, dict):
        return f"{owner.get('kind', 'resource')} {str(owner.get('name', ''))!r}"
    return str(owner)


def touched_queues(plan: Plan) -> dict[str, set[str]]:
    """By vhost, the queues a plan would delete or replace, or whose bindings it would delete."""
    found: dict[str, set[str]] = {}
    for change in plan.changes:
        if change.kind == QUEUE.name and change.action in (Action.DELETE, Action.REPLACE):
            found.setdefault(change.vhost, set()).add(change.name)
        elif change.action is Action.DELETE and (destination := _bound_queue(change)) is not None:
            found.setdefault(change.vhost, set()).add(destination)
    return found


def without_protected(plan: Plan, protected: Protected) -> Plan:
    """The plan that leaves protected queues (and their bindings) as the broker keeps them."""
    if not protected:
        return plan
    kept: list[Change] = []
    unmanaged: list[Unmanaged] = []
    problems: list[str] = []
    for change in plan.changes:
        owner = _owner(change, protected)
        if owner is None:
            kept.append(change)
        elif change.action is Action.DELETE and change.before is not None:
            unmanaged.append(Unmanaged(change.before, note=f"protected by {owner} ({_WHY}): never pruned"))
        elif change.action is Action.REPLACE:
            problems.append(
                f"queue {change.name!r} in vhost {change.vhost!r} is protected by {owner} ({_WHY}), so it cannot "
                "be replaced: give the topology its live properties, or leave it out"
            )
        else:
            kept.append(change)
    return replace(
        plan,
        changes=tuple(kept),
        unmanaged=(*plan.unmanaged, *unmanaged),
        problems=(*plan.problems, *problems),
    )


_WHY = "RabbitMQ 4.1+: the broker deletes it only with its owner"


def _owner(change: Change, protected: Protected) -> str | None:
    if change.kind == QUEUE.name:
        return protected.get((change.vhost, change.name))
    destination = _bound_queue(change)
    return None if destination is None else protected.get((change.vhost, destination))


def _bound_queue(change: Change) -> str | None:
    """The queue a binding's change binds to (None: not a binding to a queue)."""
    binding = change.before or change.after
    if change.kind != BINDING.name or not isinstance(binding, Binding) or binding.destination_type != "queue":
        return None
    return binding.destination
