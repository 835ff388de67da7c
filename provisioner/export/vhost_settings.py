"""Pure: a vhost's description, default queue type and limits as the keys of its topology body."""

from __future__ import annotations

from typing import Any

from provisioner.parameters.export import Exported

QUEUE_TYPES = ("classic", "quorum", "stream")
LIMITS = ("max-connections", "max-queues")


def vhost_metadata(broker: dict[str, Any], vhost: str) -> dict[str, Any]:
    """A vhost's settings as a definitions file or GET /api/vhosts holds them (``metadata`` first, then top level)."""
    entry = next((v for v in broker.get("vhosts") or [] if isinstance(v, dict) and v.get("name") == vhost), {})
    top = {k: entry[k] for k in ("description", "default_queue_type", "tags") if k in entry}
    metadata = entry.get("metadata")
    return {**top, **(metadata if isinstance(metadata, dict) else {})}


def export_vhost_settings(broker: dict[str, Any], objects: dict[str, list[dict[str, Any]]], vhost: str) -> Exported:
    """``description``, ``default_queue_type`` and ``limits`` of one vhost (what the format can say)."""
    found = Exported()
    metadata = vhost_metadata(broker, vhost)
    if isinstance(metadata.get("description"), str) and metadata["description"]:
        found.sections["description"] = metadata["description"]
    if metadata.get("default_queue_type") in QUEUE_TYPES[1:]:  # 4.x reports classic for a vhost that set none
        found.sections["default_queue_type"] = metadata["default_queue_type"]
    limits = {
        name: value
        for row in objects.get("parameters") or []
        if row.get("component") == "vhost-limits" and isinstance(row.get("value"), dict)
        for name, value in sorted(row["value"].items())
        if name in LIMITS and isinstance(value, int) and not isinstance(value, bool)
    }
    if limits:
        found.sections["limits"] = limits
    return found


def unexported_settings(broker: dict[str, Any], objects: dict[str, list[dict[str, Any]]], vhost: str) -> list[str]:
    """What of a vhost's settings the format cannot say (tags, other limits), one line each."""
    lines = []
    tags = vhost_metadata(broker, vhost).get("tags") or []
    tags = [t for t in (tags.split(",") if isinstance(tags, str) else tags if isinstance(tags, list) else []) if t]
    if tags:
        lines.append(f"tags of vhost {vhost!r}: {', '.join(map(str, tags))} (the format has no vhost tags)")
    for row in objects.get("parameters") or []:
        if row.get("component") == "vhost-limits" and isinstance(row.get("value"), dict):
            for name, value in sorted(row["value"].items()):
                if name not in LIMITS or not isinstance(value, int) or isinstance(value, bool):
                    lines.append(
                        f"limit {name} of vhost {vhost!r}: {value!r} (the format has max-connections, max-queues)"
                    )
    return lines
