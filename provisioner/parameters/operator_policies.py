"""Operator policies: limits imposed on a vhost's queues, combined with policies (the stricter wins)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from provisioner.parameters.core import ParameterKind, value_text
from provisioner.patterns import regex_problem


def _q(name: str) -> str:
    return quote(name, safe="")


def _from_file(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "pattern": spec["pattern"],
        "apply-to": spec.get("apply_to", "all"),
        "priority": spec.get("priority", 0),
        "definition": _canonical(dict(spec.get("definition") or {})),
    }


def _canonical(definition: dict[str, Any]) -> dict[str, Any]:
    """A whole-number key written as a decimal string ("42") as the int the broker takes (it refuses "42")."""
    for key, value in definition.items():
        allowed = KEYS.get(key)
        if allowed and isinstance(allowed[0], int) and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            definition[key] = int(value.strip())
    return definition


def _from_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "pattern": row.get("pattern", ""),
        "apply-to": row.get("apply-to", "all"),
        "priority": int(row.get("priority") or 0),
        "definition": dict(row.get("definition") or {}),
    }


# Keys an operator policy may set: 3.10 takes the first seven, 4.0 also the last four (3.10 refuses those,
# in one line when applying). Each with what its value may be: a whole number in a range, or one of a set.
_LONG = 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]+")  # ASCII digits only
KEYS: dict[str, tuple[int, int] | tuple[str, ...]] = {
    "expires": (1, 2**32 - 1),
    "message-ttl": (0, 2**32 - 1),
    "max-length": (0, _LONG),
    "max-length-bytes": (0, _LONG),
    "max-in-memory-length": (0, _LONG),
    "max-in-memory-bytes": (0, _LONG),
    "delivery-limit": (0, _LONG),
    "queue-version": (1, 2),
    "overflow": ("drop-head", "reject-publish", "reject-publish-dlx"),
    "queue-master-locator": ("client-local", "min-masters", "random"),
    "target-group-size": (1, _LONG),
}


def _check(spec: Any) -> str:
    """What the broker refuses of an operator policy: an unknown key, a value out of its range, a bad pattern."""
    if not isinstance(spec, dict):
        return ""
    definition = spec.get("definition") or {}
    unknown = sorted(str(key) for key in definition if key not in KEYS)
    if unknown:
        return f"{', '.join(map(repr, unknown))} is not an operator policy setting (those are: {', '.join(KEYS)})"
    for key, value in _canonical(dict(definition)).items():
        wrong = _value_problem(KEYS[key], value)
        if wrong:
            return f"{key} {wrong}"
    refused = regex_problem(spec["pattern"]) if isinstance(spec.get("pattern"), str) else None
    return f"pattern {refused}" if refused else ""


def _value_problem(allowed: tuple[int, int] | tuple[str, ...], value: Any) -> str:
    """Why the broker refuses ``value`` for a key that takes ``allowed``."""
    if allowed and isinstance(allowed[0], str):
        return "" if value in allowed else f"must be one of {' | '.join(map(str, allowed))}, not {value!r}"
    low, high = int(allowed[0]), int(allowed[1])
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number, not {value!r}"
    return "" if low <= value <= high else f"must be between {low} and {high}, not {value}"


def _describe(value: dict[str, Any]) -> str:
    definition = ", ".join(f"{k}={value_text(v)}" for k, v in sorted(value["definition"].items()))
    return f"pattern {value['pattern']!r} on {value['apply-to']}, priority {value['priority']}: {definition}"


OPERATOR_POLICY = ParameterKind(
    kind="operator_policy",
    file_key="operator_policies",
    from_file=_from_file,
    from_row=_from_row,
    check=_check,
    body=lambda parameter: parameter.plain(),
    describe=_describe,
    component="operator_policy",
    tags=("administrator",),  # 3.10 answers 401 "Not administrator user" to a policymaker
)
