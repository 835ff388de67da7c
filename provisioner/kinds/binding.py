"""The binding kind: a resource of its own whose whole content is its identity (created or deleted, never changed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.kinds.kind import Kind, afters, befores
from provisioner.plan import Action, Change
from provisioner.topology.model import Binding, canonical_arguments

if TYPE_CHECKING:
    from provisioner.apply import Executor


def _read(vhost: str, item: dict[str, Any]) -> Binding:
    return Binding(
        vhost,
        item["source"],
        item["destination"],
        item["destination_type"],
        item.get("routing_key", ""),
        canonical_arguments(item.get("arguments")),
    )


def _bind(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("bind", afters(changes, Binding))


def _unbind(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("unbind", befores(changes, Binding))


BINDING = Kind(
    "binding",
    creation=80,
    deletion=30,
    handlers={Action.CREATE: _bind, Action.DELETE: _unbind},
    definitions="bindings",
    read=_read,
)
