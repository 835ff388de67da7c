"""Policies and operator policies: written through the management API, changed in place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.kinds.kind import Kind, afters
from provisioner.plan import Action, Change, value_text
from provisioner.topology.model import OperatorPolicy, Policy

if TYPE_CHECKING:
    from provisioner.apply import Executor


def _describe(policy: Policy) -> str:
    table = ", ".join(f"{name}={value_text(value)}" for name, value in sorted(policy.definition.items()))
    return f"pattern {policy.pattern!r} on {policy.apply_to}: {table}"


def read_policy(model: type[Policy], vhost: str, item: dict[str, Any]) -> Policy:
    """A policy or operator policy as the management API lists it."""
    return model(
        vhost,
        item["name"],
        item["pattern"],
        dict(item.get("definition") or {}),
        apply_to=item.get("apply-to", "all"),
        priority=int(item.get("priority", 0)),
    )


def _put(executor: Executor, changes: tuple[Change, ...]) -> None:
    for policy in afters(changes, Policy):
        body = {
            "pattern": policy.pattern,
            "definition": policy.definition,
            "priority": policy.priority,
            "apply-to": policy.apply_to,
        }
        executor.management.put_policy(policy.vhost, policy.name, body)
        executor.mark_done()


def _delete(executor: Executor, changes: tuple[Change, ...]) -> None:
    for change in changes:
        executor.management.delete_policy(change.vhost, change.name)
        executor.mark_done()


def _delete_operator_policy(executor: Executor, changes: tuple[Change, ...]) -> None:
    for change in changes:
        executor.management.delete_operator_policy(change.vhost, change.name)
        executor.mark_done()


POLICY = Kind(
    "policy",
    creation=90,
    deletion=10,
    handlers={Action.CREATE: _put, Action.UPDATE: _put, Action.DELETE: _delete},
    compared=("pattern", "apply_to", "priority"),
    table="definition",
    describe=_describe,
    definitions="policies",
    read=lambda vhost, item: read_policy(Policy, vhost, item),
)
# Listed so a plan shows them; provisioner only deletes one it does not manage (--prune).
OPERATOR_POLICY = Kind(
    "operator_policy",
    creation=90,
    deletion=20,
    handlers={Action.DELETE: _delete_operator_policy},
    compared=POLICY.compared,
    table=POLICY.table,
    describe=_describe,
    read=lambda vhost, item: read_policy(OperatorPolicy, vhost, item),
)
