"""Policies and operator policies: written through the management API, changed in place."""

from __future__ import annotations

from typing import Any

from provisioner.kinds.kind import Kind
from provisioner.plan import Action, value_text
from provisioner.topology.model import OperatorPolicy, Policy


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


POLICY = Kind(
    "policy",
    creation=90,
    deletion=10,
    actions=(Action.CREATE, Action.UPDATE, Action.DELETE),
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
    actions=(Action.DELETE,),
    compared=POLICY.compared,
    table=POLICY.table,
    describe=_describe,
    read=lambda vhost, item: read_policy(OperatorPolicy, vhost, item),
)
