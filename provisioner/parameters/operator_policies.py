"""Operator policies: limits imposed on a vhost's queues, combined with policies (the stricter wins)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from provisioner.parameters.core import ParameterKind, value_text


def _q(name: str) -> str:
    return quote(name, safe="")


def _from_file(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "pattern": spec["pattern"],
        "apply-to": spec.get("apply_to", "all"),
        "priority": spec.get("priority", 0),
        "definition": dict(spec.get("definition") or {}),
    }


def _from_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "pattern": row.get("pattern", ""),
        "apply-to": row.get("apply-to", "all"),
        "priority": int(row.get("priority") or 0),
        "definition": dict(row.get("definition") or {}),
    }


def _describe(value: dict[str, Any]) -> str:
    definition = ", ".join(f"{k}={value_text(v)}" for k, v in sorted(value["definition"].items()))
    return f"pattern {value['pattern']!r} on {value['apply-to']}, priority {value['priority']}: {definition}"


OPERATOR_POLICY = ParameterKind(
    kind="operator_policy",
    file_key="operator_policies",
    collection=lambda vhost: f"operator-policies/{_q(vhost)}",
    item=lambda vhost, name: f"operator-policies/{_q(vhost)}/{_q(name)}",
    from_file=_from_file,
    from_row=_from_row,
    body=lambda parameter: parameter.plain(),
    describe=_describe,
    component="operator_policy",
    tags=("administrator",),  # 3.10 answers 401 "Not administrator user" to a policymaker
)
