"""Global parameters (cluster_name, ...): cluster-wide, pruned only when the topology says it owns them all."""

from __future__ import annotations

from typing import Any

from provisioner.parameters.core import Parameter, ParameterKind


def _kept(name: str) -> str:
    """The broker's own parameters (internal_cluster_id identifies the cluster) are never removed."""
    return "never pruned: the broker's own" if name.startswith("internal_") else ""


def _body(parameter: Parameter) -> dict[str, Any]:
    return {"name": parameter.name, "value": parameter.plain()}


GLOBAL_PARAMETER = ParameterKind(
    kind="global_parameter",
    file_key="parameters",
    from_file=lambda spec: spec,
    from_row=lambda row: row.get("value"),
    body=_body,
    cluster_wide=True,
    tags=("policymaker", "administrator"),  # 3.10 lets a policymaker write them
    kept=_kept,
)
