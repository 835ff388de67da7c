"""Pure: users, permissions and topic permissions of the exported vhosts as topology sections.

A user's password becomes a ``${VAR}`` placeholder with a note: an export never
writes a password nor a password hash (``password_hash:`` is for those who
choose to write it themselves).
"""

from __future__ import annotations

import re
from typing import Any

from provisioner.parameters.core import Placeholder
from provisioner.parameters.export import Exported


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


def export_users(broker: dict[str, Any], vhosts: set[str]) -> Exported:
    """The users who hold a permission in the exported vhosts, each password a placeholder."""
    found = Exported()
    permitted = {
        str(row.get("user"))
        for kind in ("permissions", "topic_permissions")
        for row in broker.get(kind) or []
        if row.get("vhost") in vhosts
    }
    for row in sorted(broker.get("users") or [], key=lambda r: str(r.get("name"))):
        name = str(row.get("name"))
        if name not in permitted:
            continue
        variable = "USER_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper() + "_PASSWORD"
        tags = row.get("tags") or []
        tags = [t for t in tags.split(",") if t] if isinstance(tags, str) else list(tags)
        spec: dict[str, Any] = {"password": Placeholder("${" + variable + "}"), "tags": sorted(tags)}
        found.sections.setdefault("users", {})[name] = spec
        found.placeholders.add(variable)
        message = f"set {variable} to the password of user {name!r} (an export never writes a password or its hash)"
        found.notes.append((("users", name), message))
    return found
