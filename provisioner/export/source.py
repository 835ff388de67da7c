"""Read what to export: the live broker's definitions (read only) or a definitions file.

Both end as the same ``Definitions``: each vhost's objects, and the broker-wide
parts (users, permissions, parameters) that a topology cannot express yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.broker.endpoints import where
from provisioner.broker.management import Management, ManagementError
from provisioner.errors import ProvisionerError

OBJECT_KINDS = ("exchanges", "queues", "bindings", "policies", "parameters", "operator_policies")
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Definitions:
    """Each vhost's objects (keyed by kind, as the management API writes them) and the broker-wide rest."""

    vhosts: dict[str, dict[str, list[dict[str, Any]]]]
    broker: dict[str, Any] = field(default_factory=dict)  # users, permissions, vhosts' metadata, ...
    source: str = ""  # for messages: "the broker at host:port" / "definitions file x.json"
    unread: str = ""  # why users and permissions could not be read, if they could not


def split(data: dict[str, Any], vhosts: Sequence[str], source: str) -> Definitions:
    """Group a definitions document by vhost; a one-vhost export (no ``vhost`` fields) is ``vhosts[0]`` or '/'."""
    per_vhost = "vhosts" not in data and not any(
        "vhost" in item for kind in OBJECT_KINDS for item in data.get(kind) or [] if isinstance(item, dict)
    )
    if per_vhost and len(vhosts) > 1:
        raise ProvisionerError(f"{source} holds one vhost's definitions; name at most one --vhost")
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    if per_vhost:
        name = vhosts[0] if vhosts else "/"
        grouped[name] = {kind: list(data.get(kind) or []) for kind in OBJECT_KINDS}
    else:
        for item in data.get("vhosts") or []:
            grouped.setdefault(item["name"], {kind: [] for kind in OBJECT_KINDS})
        for kind in OBJECT_KINDS:
            for item in data.get(kind) or []:
                grouped.setdefault(item.get("vhost", "/"), {k: [] for k in OBJECT_KINDS})[kind].append(item)
    missing = [name for name in vhosts if name not in grouped]
    if missing:
        raise ProvisionerError(f"vhost {missing[0]!r} is not in {source}")
    chosen = {name: grouped[name] for name in sorted(vhosts or grouped)}
    broker = {k: v for k, v in data.items() if k not in OBJECT_KINDS}
    unread = "" if "users" in data else f"{source} holds no users or permissions"
    return Definitions(chosen, broker, source, unread)


def from_file(path: str, vhosts: Sequence[str]) -> Definitions:
    """A definitions JSON file as ``rabbitmqctl export_definitions`` or GET /api/definitions[/vhost] writes it."""
    source = f"definitions file {path}"
    try:
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            raise ProvisionerError(f"{source} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = json.loads(Path(path).read_bytes())
    except OSError as error:
        raise ProvisionerError(f"cannot read {source}: {error.strerror or error}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise ProvisionerError(f"{source} is not JSON: {str(error)[:200]}") from error
    if not isinstance(data, dict) or not _well_formed(data):
        raise ProvisionerError(f"{source} is not a RabbitMQ definitions export (exchanges, queues, bindings lists)")
    return split(data, vhosts, source)


def _well_formed(data: dict[str, Any]) -> bool:
    """Lists of objects with the fields the export reads."""
    required = {
        "exchanges": ("name", "type"),
        "queues": ("name",),
        "bindings": ("source", "destination", "destination_type"),
        "policies": ("name", "pattern"),
        "vhosts": ("name",),
    }
    for kind, fields in required.items():
        items = data.get(kind, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) and all(f in i for f in fields) for i in items):
            return False
    return any(kind in data for kind in ("exchanges", "queues", "bindings", "vhosts"))


def from_broker(management: Management, vhosts: Sequence[str]) -> Definitions:
    """The live broker's definitions, reads only: two requests per vhost whatever its size, four for the rest."""
    source = f"the broker at {where(management.base)}"
    listed = management.listing("vhosts")
    visible = {item["name"] for item in listed}
    for name in vhosts:
        if name not in visible:
            raise ProvisionerError(f"vhost {name!r} is not in {source} (or this user cannot see it)")
    grouped = {}
    for name in sorted(vhosts or visible):
        found = management.definitions(name) or {}
        found["operator_policies"] = management.operator_policies(name)  # definitions leave them out
        grouped[name] = {kind: list(found.get(kind) or []) for kind in OBJECT_KINDS}
    broker: dict[str, Any] = {"vhosts": [_vhost_entry(item) for item in listed if item["name"] in grouped]}
    try:
        cluster_wide = () if vhosts else ("global-parameters",)  # only an export of every vhost holds them
        for what in ("users", "permissions", "topic-permissions", *cluster_wide):
            broker[what.replace("-", "_")] = management.listing(what)
    except ManagementError as error:
        if error.status != 403:
            raise
        return Definitions(grouped, broker, source, "users and permissions need an administrator to read")
    return Definitions(grouped, broker, source)


def _vhost_entry(item: dict[str, Any]) -> dict[str, Any]:
    """A GET /api/vhosts row as a definitions file writes a vhost (its settings under ``metadata``)."""
    metadata = dict(item.get("metadata") or {})
    for key in ("tags", "default_queue_type"):
        if item.get(key) and key not in metadata:
            metadata[key] = item[key]
    return {"name": item["name"], "metadata": metadata}
