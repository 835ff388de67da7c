"""The binding kind: a resource of its own whose whole content is its identity (created or deleted, never changed)."""

from __future__ import annotations

from typing import Any

from provisioner.kinds.kind import Kind
from provisioner.plan import Action
from provisioner.topology.model import Binding, canonical_arguments


def _read(vhost: str, item: dict[str, Any]) -> Binding:
    return Binding(
        vhost,
        item["source"],
        item["destination"],
        item["destination_type"],
        item.get("routing_key", ""),
        canonical_arguments(item.get("arguments")),
    )


BINDING = Kind(
    "binding",
    creation=80,
    deletion=30,
    actions=(Action.CREATE, Action.DELETE),
    definitions="bindings",
    read=_read,
)
