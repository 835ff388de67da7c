"""The queue kind: declared over AMQP; a changed property or argument is a migration (apply --migrate)."""

from __future__ import annotations

from typing import Any

from provisioner.kinds.exchange import arguments_text
from provisioner.kinds.kind import Kind
from provisioner.plan import Action
from provisioner.topology.model import Queue, canonical_arguments


def _describe(queue: Queue) -> str:
    flags = [queue.type] + (["auto_delete"] if queue.auto_delete else [])
    if not queue.durable:
        flags.append("transient")
    return ", ".join(flags + arguments_text(queue.arguments))


def _read(vhost: str, item: dict[str, Any]) -> Queue:
    """A queue's type comes from its ``x-queue-type`` argument, the only way a type is set."""
    arguments = item.get("arguments") or {}
    return Queue(
        vhost,
        item["name"],
        type=str(arguments.get("x-queue-type") or "classic"),
        durable=bool(item.get("durable", True)),
        auto_delete=bool(item.get("auto_delete", False)),
        arguments=canonical_arguments(arguments),
    )


QUEUE = Kind(
    "queue",
    creation=70,
    deletion=40,
    actions=(Action.CREATE, Action.REPLACE, Action.DELETE),
    compared=("type", "durable", "auto_delete"),
    table="arguments",
    immutable=("type", "durable", "auto_delete", "*"),
    why="a queue's properties and arguments cannot change on the broker",
    describe=_describe,
    definitions="queues",
    read=_read,
)
