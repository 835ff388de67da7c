"""Parameter kinds over the management API: read what the topology owns, write one object at a time.

Reads nothing for a topology without these kinds. An error the broker sends
back never carries a URI's password: every message is redacted first.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from provisioner.broker.management import Management, ManagementError
from provisioner.errors import BrokerError
from provisioner.kinds import PHASE_INDEX
from provisioner.parameters import BY_KIND
from provisioner.parameters.compare import LiveParameters, parameter_differences
from provisioner.parameters.core import Parameter
from provisioner.parameters.load import Parameters
from provisioner.plan import Plan
from provisioner.redact import redact
from provisioner.topology.model import OperatorPolicy


def read_parameters(management: Management, desired: Parameters) -> LiveParameters:
    """The live objects of every owned (vhost, kind); a kind whose plugin is off is noted, not read."""
    if desired.is_empty:
        return LiveParameters()
    off = _plugins_off(management, {BY_KIND[kind] for _, kind in desired.owned})
    objects: list[Parameter] = []
    read = set()
    for vhost, name in sorted(desired.owned):
        kind = BY_KIND[name]
        if name in off:
            continue
        rows = management._request("GET", kind.collection(vhost), missing_ok=True) or []
        objects += [Parameter(kind.kind, vhost, row["name"], kind.from_row(row)) for row in rows]
        read.add((vhost, name))
    return LiveParameters(tuple(objects), frozenset(off), frozenset(read))


def _plugins_off(management: Management, kinds: set[Any]) -> set[str]:
    """Kinds whose plugin is off: its management extension is missing from GET /api/extensions."""
    if not any(kind.extension for kind in kinds):
        return set()
    extensions = {row.get("javascript") for row in management._request("GET", "extensions") or []}
    return {kind.kind for kind in kinds if kind.extension and kind.extension not in extensions}


def put_parameter(management: Management, parameter: Parameter) -> None:
    kind = BY_KIND[parameter.kind]
    try:
        management._request("PUT", kind.item(parameter.vhost, parameter.name), json=kind.body(parameter))
    except ManagementError as error:
        raise BrokerError(redact(str(error), parameter.secrets())) from None


def delete_parameter(management: Management, parameter: Parameter | OperatorPolicy) -> None:
    kind = BY_KIND[parameter.kind]
    management._request("DELETE", kind.item(parameter.vhost, parameter.name), missing_ok=True)


def with_parameters(plan: Plan, desired: Parameters, management: Management, prune: bool) -> Plan:
    """The plan with the parameter kinds' changes in their phases; no request for a topology without them.

    In a vhost whose operator policies the topology owns, they are compared
    here (the vhost diff lists them otherwise), and the ones it declares are
    not drift.
    """
    if desired.is_empty:
        return plan
    live = read_parameters(management, desired)
    found, left, problems = parameter_differences(desired, live, prune)
    owned = {vhost for vhost, kind in desired.owned if kind == "operator_policy"}

    def generic(kind: str, vhost: str) -> bool:
        return kind == "operator_policy" and vhost in owned

    declared = {p.key for p in desired.objects}
    changes = [c for c in plan.changes if not generic(c.kind, c.vhost)] + found
    return replace(
        plan,
        changes=tuple(sorted(changes, key=lambda c: PHASE_INDEX[(c.action, c.kind)])),  # stable
        unmanaged=tuple(u for u in plan.unmanaged if not generic(u.resource.kind, u.resource.vhost)) + tuple(left),
        drift=tuple(d for d in plan.drift if d.policy.key not in declared),
        problems=plan.problems + tuple(problems),
    )
