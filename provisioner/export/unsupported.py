"""Pure: what an export leaves out (users and permissions without --accounts, what the format lacks), one line each.

These are listed at the top of the exported file and on stderr, never silently
dropped. Secrets (password hashes, URIs with credentials) are never part of a line.
"""

from __future__ import annotations

from provisioner.export.source import Definitions
from provisioner.export.vhost_settings import unexported_settings
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
    for name, objects in definitions.vhosts.items():
        lines.extend(unexported_settings(broker, objects, name))
        for item in objects.get("parameters") or []:
            if item.get("component") not in COMPONENTS and item.get("component") != "vhost-limits":
                lines.append(f"{item.get('component')} {item.get('name')!r} in vhost {name!r} (not in the format)")
    return sorted(lines)  # operator policies and global parameters are exported (provisioner/parameters/export.py)
