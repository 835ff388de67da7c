"""Read what to export: the live broker's definitions (read only) or a definitions file.

Both end as the same ``Definitions``: each vhost's objects, and the broker-wide
parts (users, permissions, parameters) that a topology cannot express yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from provisioner.broker.endpoints import where
from provisioner.broker.management import Management, ManagementError
from provisioner.broker.reads import broker_version, in_parallel, raised
from provisioner.errors import ProvisionerError
from provisioner.export.file_checks import SINGULAR, malformed
from provisioner.protected import may_protect

OBJECT_KINDS = ("exchanges", "queues", "bindings", "policies", "parameters", "operator_policies")
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Definitions:
    """Each vhost's objects (keyed by kind, as the management API writes them) and the broker-wide rest."""

    vhosts: dict[str, dict[str, list[dict[str, Any]]]]
    broker: dict[str, Any] = field(default_factory=dict)  # users, permissions, vhosts' metadata, ...
    source: str = ""  # for messages: "the broker at host:port" / "definitions file x.json"
    unread: str = ""  # why users and permissions could not be read, if they could not
    duplicates: tuple[tuple[str, str, str, str], ...] = ()  # (vhost, section, name, what was kept) listed twice


def split(data: dict[str, Any], vhosts: Sequence[str], source: str) -> Definitions:
    """Group a definitions document by vhost; a one-vhost file (GET /api/definitions/{vhost}) goes whole to --vhost."""
    per_vhost = _is_per_vhost(data)
    grouped = _per_vhost(data, vhosts, source) if per_vhost else _grouped(data)
    missing = [name for name in vhosts if name not in grouped]
    if missing:
        raise ProvisionerError(f"vhost {missing[0]!r} is not in {source}")
    chosen = {name: grouped[name] for name in sorted(vhosts or grouped)}
    duplicates = []
    for name, objects in chosen.items():
        objects["operator_policies"] = _operator_policies(objects)
        for kind in ("exchanges", "queues", "policies"):
            objects[kind], found = _first_of_each(name, kind, objects[kind], source)
            duplicates += found
    broker = {k: v for k, v in data.items() if k not in OBJECT_KINDS}
    if per_vhost:
        broker["vhosts"] = [_per_vhost_settings(data, vhosts[0])]
    unread = "" if "users" in data else f"{source} holds no users or permissions"
    return Definitions(chosen, broker, source, unread, tuple(duplicates))


def _is_per_vhost(data: dict[str, Any]) -> bool:
    """The body of GET /api/definitions/{vhost}: no vhosts list, and exchanges, queues and bindings name no vhost."""
    return "vhosts" not in data and not any(
        "vhost" in item
        for kind in ("exchanges", "queues", "bindings")
        for item in data.get(kind) or []
        if isinstance(item, dict)
    )


def _per_vhost(data: dict[str, Any], vhosts: Sequence[str], source: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    if len(vhosts) != 1:
        raise ProvisionerError(
            f"{source} holds one vhost's definitions (its exchanges, queues and bindings name no vhost): "
            "name the vhost they belong to with one --vhost"
        )
    return {vhosts[0]: {kind: [_without_vhost(i) for i in data.get(kind) or []] for kind in OBJECT_KINDS}}


def _per_vhost_settings(data: dict[str, Any], vhost: str) -> dict[str, Any]:
    """A one-vhost file's own settings (4.x writes metadata, description, default queue type at the top)."""
    entry: dict[str, Any] = {"name": vhost}
    for key in ("metadata", "description", "default_queue_type", "tags"):
        if key in data:
            entry[key] = data[key]
    return entry


def _without_vhost(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "vhost"}


def _grouped(data: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for item in data.get("vhosts") or []:
        grouped.setdefault(item["name"], {kind: [] for kind in OBJECT_KINDS})
    for kind in OBJECT_KINDS:
        for item in data.get(kind) or []:
            grouped.setdefault(item.get("vhost", "/"), {k: [] for k in OBJECT_KINDS})[kind].append(item)
    return grouped


def _operator_policies(objects: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Operator policies as GET /api/operator-policies lists them; a file keeps them in ``parameters``."""
    found = list(objects.get("operator_policies") or [])
    listed = {str(row.get("name")) for row in found}
    for row in objects.get("parameters") or []:
        value = row.get("value")
        if row.get("component") == "operator_policy" and isinstance(value, dict) and row.get("name") not in listed:
            found.append({**value, "name": row.get("name")})
    return found


def _first_of_each(
    vhost: str, kind: str, items: list[dict[str, Any]], source: str
) -> tuple[list[dict[str, Any]], list[tuple[str, str, str, str]]]:
    """One entry per name (the first, as listed); each name listed more than once, with what was kept."""
    kept: dict[str, tuple[int, dict[str, Any]]] = {}
    counts: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        counts.setdefault(str(item["name"]), []).append(index + 1)
        kept.setdefault(str(item["name"]), (index, item))
    duplicates = []
    for name, places in counts.items():
        if len(places) > 1:
            same = all(i == kept[name][1] for i in items if str(i["name"]) == name)
            what = SINGULAR[kind]
            message = (
                f"{what} {name!r} of vhost {vhost!r} is listed {len(places)} times in {source} "
                f"(entries {', '.join(map(str, places))} of {kind}); "
                + ("they are identical" if same else f"they differ and the export keeps entry {places[0]}")
                + " (the broker keeps either, depending on timing)"
            )
            duplicates.append((vhost, kind, name, message))
    return [item for _, item in sorted(kept.values(), key=lambda pair: pair[0])], duplicates


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
    except RecursionError:  # the cause is only a very deep stack
        raise ProvisionerError(f"{source} nests too deeply to be a definitions export") from None
    if not isinstance(data, dict) or not any(k in data for k in ("exchanges", "queues", "bindings", "vhosts")):
        raise ProvisionerError(f"{source} is not a RabbitMQ definitions export (exchanges, queues, bindings lists)")
    refused = malformed(data)
    if refused:
        raise ProvisionerError(f"{source}: {refused}")
    return split(data, vhosts, source)


def from_broker(management: Management, vhosts: Sequence[str]) -> Definitions:
    """The live broker's definitions, reads only: two requests per vhost whatever its size, five for the rest.

    After the vhosts and the version, every read goes out side by side (broker/reads.py): on 4.3 a
    vhost of 40,001 objects takes the broker 0.23 s for its definitions, 0.15 s for the internal
    exchanges they leave out and 0.44 s for the list that says which queues it protects.
    """
    source = f"the broker at {where(management.base)}"
    listed = management.listing("vhosts")
    visible = {item["name"] for item in listed}
    for name in vhosts:
        if name not in visible:
            raise ProvisionerError(f"vhost {name!r} is not in {source} (or this user cannot see it)")
    names = sorted(vhosts or visible)
    protects = may_protect(broker_version(management))
    calls: dict[tuple[str, str], Callable[[Management], Any]] = {}
    for name in names:
        calls |= _vhost_reads(name, protects)
    cluster_wide = () if vhosts else ("global-parameters",)  # only an export of every vhost holds them
    for what in ("users", "permissions", "topic-permissions", *cluster_wide):
        calls[("", what)] = partial(Management.listing, what=what)
    answers = in_parallel(management, calls)
    grouped = {}
    for name in names:
        found = raised(answers[(name, "definitions")]) or {}  # internal exchanges too, also on 4.3
        found["operator_policies"] = raised(answers[(name, "operator_policies")])  # definitions leave them out
        protected = answers.get((name, "protected"))
        if protected is None and may_protect(str(found.get("rabbit_version") or "")):
            protected = management.protected_queues(name)  # the overview was refused: the definitions said 4.1+
        _mark_protected(raised(protected) or {}, found)
        grouped[name] = {kind: list(found.get(kind) or []) for kind in OBJECT_KINDS}
    broker: dict[str, Any] = {"vhosts": [_vhost_entry(item) for item in listed if item["name"] in grouped]}
    for (vhost, what), answer in answers.items():
        if vhost:
            continue
        if isinstance(answer, ManagementError) and answer.status == 403:
            return Definitions(grouped, broker, source, "users and permissions need an administrator to read")
        broker[what.replace("-", "_")] = raised(answer)
    return Definitions(grouped, broker, source)


def _vhost_reads(vhost: str, protects: bool) -> dict[tuple[str, str], Callable[[Management], Any]]:
    """The reads of one vhost an export makes: its definitions, operator policies and (4.1+) protected queues."""
    calls: dict[tuple[str, str], Callable[[Management], Any]] = {
        (vhost, "definitions"): partial(Management.definitions, vhost=vhost, complete=True),
        (vhost, "operator_policies"): partial(Management.operator_policies, vhost=vhost),
    }
    if protects:
        calls[(vhost, "protected")] = partial(Management.protected_queues, vhost=vhost)
    return calls


def _mark_protected(protected: dict[str, str], found: dict[str, Any]) -> None:
    """Mark the queues the broker protects (4.1+: a plugin's own) with their owner, as its queue list shows
    it (definitions do not): the export leaves them out, as the broker's own."""
    for item in found.get("queues") or []:
        if item.get("name") in protected:
            item["internal_owner"] = protected[item["name"]]


def _vhost_entry(item: dict[str, Any]) -> dict[str, Any]:
    """A GET /api/vhosts row as a definitions file writes a vhost (its settings under ``metadata``)."""
    metadata = dict(item.get("metadata") or {})
    for key in ("tags", "default_queue_type"):
        if item.get(key) and key not in metadata:
            metadata[key] = item[key]
    return {"name": item["name"], "metadata": metadata}
