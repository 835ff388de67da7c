"""Pure: what a topology cannot express yet (users, permissions, parameters, limits), one line each.

These are listed at the top of the exported file and on stderr, never silently
dropped. Secrets (password hashes, URIs with credentials) are never part of a line.
"""

from __future__ import annotations

from typing import Any

from provisioner.export.source import Definitions
from provisioner.parameters import COMPONENTS


def inexpressible(definitions: Definitions, accounts: bool = False) -> list[str]:
    """Every object of the exported vhosts (and the users who can reach them) the export leaves out.

    With ``accounts`` the users, permissions and topic permissions are exported (export/accounts.py).
    """
    names = set(definitions.vhosts)
    broker = definitions.broker
    lines: list[str] = []
    permitted: set[str] = set()
    for kind in () if accounts else ("permissions", "topic_permissions"):
        for item in broker.get(kind) or []:
            if item.get("vhost") in names:
                permitted.add(str(item.get("user")))
                what = kind.replace("_", " ")
                rights = ", ".join(f"{k} {item[k]!r}" for k in ("configure", "write", "read", "exchange") if k in item)
                where = f"in vhost {item['vhost']!r} ({rights})"
                lines.append(f"{what} of user {item.get('user')!r} {where}; export --accounts writes them")
    for user in broker.get("users") or []:
        if user.get("name") in permitted:
            tags = user.get("tags") or []
            tags = tags.split(",") if isinstance(tags, str) else tags
            described = f" (tags: {', '.join(t for t in tags if t)})" if tags else ""
            lines.append(f"user {user['name']!r}{described}; export --accounts writes it")
    for vhost in broker.get("vhosts") or []:
        if vhost.get("name") in names:
            lines.extend(_vhost_settings(vhost))
    for name, objects in definitions.vhosts.items():
        for item in objects.get("parameters") or []:
            if item.get("component") not in COMPONENTS:
                lines.append(f"{item.get('component')} {item.get('name')!r} in vhost {name!r}{_limits(item)}")
    return sorted(lines)  # operator policies and global parameters are exported (provisioner/parameters/export.py)


def _vhost_settings(vhost: dict[str, Any]) -> list[str]:
    """Limits, default queue type and tags of a vhost."""
    found = []
    metadata = dict(vhost.get("metadata") or {})
    for key in ("tags", "default_queue_type"):  # a description changes nothing
        if metadata.get(key) and metadata[key] != "undefined":
            found.append(f"{key.replace('_', ' ')} of vhost {vhost['name']!r}: {metadata[key]}")
    if vhost.get("limits"):
        found.append(f"limits of vhost {vhost['name']!r}: {vhost['limits']}")
    return found


def _limits(item: dict[str, Any]) -> str:
    """Vhost limits are harmless to show; other parameters (federation, shovels) may hold URIs with passwords."""
    if item.get("component") == "vhost-limits" and isinstance(item.get("value"), dict):
        return " (" + ", ".join(f"{k}: {v}" for k, v in sorted(item["value"].items())) + ")"
    return ""
