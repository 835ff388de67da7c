"""Pure: the broker's operator policies, federation upstreams, shovels and global parameters as topology sections.

A URI that carries a password is written as a ``${VAR}`` placeholder with a
note saying what to set: the exported file never holds a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.parameters import BY_KIND, COMPONENTS, KINDS
from provisioner.parameters.core import Placeholder, Uri, masked

PLACEHOLDER_VALUE = "amqp://placeholder"  # what the export's own validation sets each placeholder to


@dataclass
class Exported:
    """Sections to add to a document, notes at their objects (path, message) and the placeholders written."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)
    placeholders: set[str] = field(default_factory=set)


def export_vhost_parameters(objects: dict[str, list[dict[str, Any]]], taken: frozenset[str] = frozenset()) -> Exported:
    """A vhost's operator policies, federation upstreams and shovels (other components stay out); no placeholder
    reuses a variable of ``taken`` (those other vhosts and users were given)."""
    found = Exported()
    for row in sorted(objects.get("operator_policies") or [], key=lambda r: str(r.get("name"))):
        value = BY_KIND["operator_policy"].from_row(row)
        spec = {"pattern": value["pattern"], "apply_to": value["apply-to"], "priority": value["priority"]}
        found.sections.setdefault("operator_policies", {})[row["name"]] = spec | {"definition": value["definition"]}
    for row in sorted(objects.get("parameters") or [], key=lambda r: (str(r.get("component")), str(r.get("name")))):
        kind = COMPONENTS.get(str(row.get("component")))
        if kind is None or kind.kind == OPERATOR_POLICY.name or not isinstance(row.get("value"), dict):
            continue  # operator policies come from their own list above
        spec = {key.replace("-", "_"): value for key, value in sorted(row["value"].items())}
        section = kind.file_key
        for name in kind.uri_fields:
            field_name = name.replace("-", "_")
            if field_name in spec:
                path = (section, row["name"])
                spec[field_name] = _placeholder(
                    found, path, f"{kind.kind}_{row['name']}_{field_name}", spec[field_name], taken
                )
        found.sections.setdefault(section, {})[row["name"]] = spec
    return found


def export_global_parameters(rows: list[dict[str, Any]], taken: frozenset[str] = frozenset()) -> Exported:
    """The cluster's global parameters, without the broker's own (internal_cluster_id); a URI with a password
    anywhere in a value is written as a placeholder, as a shovel's is."""
    found = Exported()
    kind = next(k for k in KINDS if k.cluster_wide)
    for row in sorted(rows, key=lambda r: str(r.get("name"))):
        name = str(row.get("name"))
        if not kind.kept(name):
            path = (kind.file_key, row["name"])
            value = _without_passwords(found, path, f"global_parameter_{name}", row.get("value"), taken)
            found.sections.setdefault(kind.file_key, {})[row["name"]] = value
    return found


def _without_passwords(found: Exported, path: tuple[Any, ...], name: str, value: Any, taken: frozenset[str]) -> Any:
    """``value`` with every URI that carries a password, at any depth, as a ``${VAR}`` placeholder."""
    if isinstance(value, dict):
        return {key: _without_passwords(found, path, f"{name}_{key}", item, taken) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_passwords(found, path, f"{name}_{n + 1}", item, taken) for n, item in enumerate(value)]
    return _placeholder(found, path, name, value, taken)


def variable_name(name: str, found: Exported, taken: frozenset[str]) -> str:
    """``name`` as an environment variable no other placeholder of the export uses.

    Names that differ only in punctuation or in letters outside ASCII (``app-a``, ``app.a``; two vhosts'
    shovels ``drain``) would share one variable, and so one password: the later ones get ``_2``, ``_3``.
    """
    base = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
    variable, number = base, 1
    while variable in found.placeholders or variable in taken:
        number += 1
        variable = f"{base}_{number}"
    found.placeholders.add(variable)
    return variable


def _placeholder(found: Exported, path: tuple[Any, ...], name: str, value: Any, taken: frozenset[str]) -> Any:
    """``${NAME}`` for a URI with a password (each of a list), the URI itself otherwise."""
    if isinstance(value, list):
        return [_placeholder(found, path, f"{name}_{index + 1}", item, taken) for index, item in enumerate(value)]
    if not isinstance(value, str) or not Uri(value).password():
        return value
    variable = variable_name(name, found, taken)
    found.notes.append(
        (path, f"set {variable} to {masked(value)} with its password (an export never writes a password)")
    )
    return Placeholder("${" + variable + "}")
