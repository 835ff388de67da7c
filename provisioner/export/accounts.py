"""Pure: users, permissions and topic permissions of the exported vhosts as topology sections.

A user's password becomes a ``${VAR}`` placeholder with a note: an export never
writes a password nor a password hash (``password_hash:`` is for those who
choose to write it themselves).
"""

from __future__ import annotations

import re
from typing import Any

from provisioner.parameters.core import Placeholder
from provisioner.parameters.export import Exported, variable_name


def export_permissions(broker: dict[str, Any], vhost: str) -> Exported:
    """One vhost's permissions and topic permissions, by user."""
    found = Exported()
    for row in sorted(broker.get("permissions") or [], key=lambda r: str(r.get("user"))):
        if row.get("vhost") == vhost:
            rights = {name: row.get(name, "") for name in ("configure", "write", "read")}
            found.sections.setdefault("permissions", {})[row["user"]] = rights
    for row in sorted(
        broker.get("topic_permissions") or [], key=lambda r: (str(r.get("user")), str(r.get("exchange")))
    ):
        if row.get("vhost") == vhost:
            entry = {"exchange": row["exchange"], "write": row.get("write", ""), "read": row.get("read", "")}
            found.sections.setdefault("topic_permissions", {}).setdefault(row["user"], []).append(entry)
    return found


def export_users(
    broker: dict[str, Any], vhosts: set[str], whole: bool = True, taken: frozenset[str] = frozenset()
) -> Exported:
    """The users who hold a permission in the exported vhosts, or none anywhere (the cluster's own: only when
    ``whole``, every vhost exported), each password a placeholder (none a variable of ``taken``), with their
    limits; a note for the rest."""
    found = Exported()
    holders: dict[str, set[str]] = {}
    for kind in ("permissions", "topic_permissions"):
        for row in broker.get(kind) or []:
            holders.setdefault(str(row.get("user")), set()).add(str(row.get("vhost")))
    for row in sorted(broker.get("users") or [], key=lambda r: str(r.get("name"))):
        name = str(row.get("name"))
        held = holders.get(name, set())
        if not held & vhosts and (held or not whole):
            why = (
                f"it holds permissions only in vhost(s) {', '.join(map(repr, sorted(held)))}, which are not exported"
                if held
                else "it holds no permission in any vhost, and only an export of every vhost carries such users"
            )
            found.notes.append(((), f"left out: user {name!r}: {why}"))
            continue
        found.sections.setdefault("users", {})[name] = _user_spec(name, row, found, taken)
    return found


def _user_spec(name: str, row: dict[str, Any], found: Exported, taken: frozenset[str]) -> dict[str, Any]:
    """One user's entry: a password placeholder (and its note), tags and limits as the broker holds them."""
    variable = variable_name(f"user_{name}_password", found, taken)
    tags = row.get("tags") or []
    tags = [t for t in tags.split(",") if t] if isinstance(tags, str) else list(tags)
    spec: dict[str, Any] = {"password": Placeholder("${" + variable + "}"), "tags": sorted(tags)}
    limits = row.get("limits")
    if isinstance(limits, dict) and limits:
        spec["limits"] = {str(key): _whole(value) for key, value in sorted(limits.items())}
    message = f"set {variable} to the password of user {name!r} (an export never writes a password or its hash)"
    found.notes.append((("users", name), message))
    return spec


def _whole(value: Any) -> Any:
    """A limit as the broker takes it: a decimal string is its number; anything else is kept for validate to name."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    return value
