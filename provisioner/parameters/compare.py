"""Pure: the topology's parameter kinds x the broker's -> changes, what is left alone, and problems. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.kinds.runtime_parameters import OPERATOR_POLICY, describe
from provisioner.parameters import BY_KIND, KINDS
from provisioner.parameters.core import Parameter, ParameterKind, Parameters, Uri, same_value, value_text
from provisioner.plan import Action, Change, Plan, Unmanaged


@dataclass(frozen=True)
class LiveParameters:
    """What the broker holds of the owned (vhost, kind) pairs, and the kinds whose plugin is off."""

    objects: tuple[Parameter, ...] = ()
    plugins_off: frozenset[str] = frozenset()  # kinds
    read: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # the (vhost, kind) pairs read


def parameter_differences(
    desired: Parameters, live: LiveParameters, prune: bool
) -> tuple[list[Change], list[Unmanaged], list[str]]:
    """Create what is missing, update what differs, delete (with --prune) or list what the topology lacks."""
    problems = [_plugin_off(kind) for kind in KINDS if kind.kind in live.plugins_off and _wanted(desired, kind)]
    changes: list[Change] = []
    unmanaged: list[Unmanaged] = []
    wanted = {p.key: p for p in desired.objects if (p.vhost, p.kind) in live.read}
    present = {p.key: p for p in live.objects}
    for key in sorted(wanted.keys() | present.keys()):
        after, before = wanted.get(key), present.get(key)
        if before is None and after is not None:
            changes.append(Change(Action.CREATE, None, after, describe(after)))
        elif after is not None and before is not None and not same_value(after.value, before.value):
            changes.append(Change(Action.UPDATE, before, after, difference(before, after)))
        elif after is None and before is not None:
            found = _left(before, desired, prune)
            if isinstance(found, Change):
                changes.append(found)
            elif found is not None:
                unmanaged.append(found)
    return changes, unmanaged, problems


def _wanted(desired: Parameters, kind: ParameterKind) -> bool:
    return any(p.kind == kind.kind for p in desired.objects)


def _plugin_off(kind: ParameterKind) -> str:
    label = kind.file_key.replace("_", " ")
    return (
        f"the topology has {label}, but the broker's {' and '.join(kind.plugins)} plugins are off: "
        f"run `rabbitmq-plugins enable {' '.join(kind.plugins)}` on every node"
    )


def _left(resource: Parameter, desired: Parameters, prune: bool) -> Change | Unmanaged | None:
    """A live object the topology lacks: cluster-wide ones only under the ownership opt-in."""
    kind = BY_KIND[resource.kind]
    if kind.cluster_wide and not desired.exclusive:
        return None  # other topologies of the cluster may own it
    note = kind.kept(resource.name)
    if prune and not note:
        return Change(Action.DELETE, resource, None, "not in the topology (--prune)")
    return Unmanaged(resource, note)


def difference(before: Parameter, after: Parameter) -> str:
    """``ack-mode: "on-publish" -> "on-confirm"`` for each top-level field that differs."""
    old, new = before.value, after.value
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"value: {value_text(old)} -> {value_text(new)}"
    return "; ".join(
        _changed(k, old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if not same_value(new.get(k), old.get(k))
    )


def _changed(name: str, old: Any, new: Any) -> str:
    """One field's change; a URI whose only change is its password says so, without either password."""
    if isinstance(old, Uri) and isinstance(new, Uri) and str(old) == str(new):
        return f"{name}: (password)"
    return f"{name}: {_text(old)} -> {_text(new)}"


def _text(value: Any) -> str:
    return "(none)" if value is None else value_text(value)


def with_parameter_changes(plan: Plan, desired: Parameters, live: LiveParameters, prune: bool) -> Plan:
    """The plan with the parameter kinds' changes added (unordered: planning orders the plan once).

    In a vhost whose operator policies the topology owns, they are compared
    here (the vhost diff lists them otherwise), and the ones it declares are
    not drift.
    """
    found, left, problems = parameter_differences(desired, live, prune)
    owned = {vhost for vhost, kind in desired.owned if kind == OPERATOR_POLICY.name}

    def generic(kind: str, vhost: str) -> bool:
        return kind == OPERATOR_POLICY.name and vhost in owned

    declared = {p.key for p in desired.objects}
    changes = [c for c in plan.changes if not generic(c.kind, c.vhost)] + found
    return replace(
        plan,
        changes=tuple(changes),
        unmanaged=tuple(u for u in plan.unmanaged if not generic(u.resource.kind, u.resource.vhost)) + tuple(left),
        drift=tuple(d for d in plan.drift if d.policy.key not in declared),
        problems=plan.problems + tuple(problems),
    )
