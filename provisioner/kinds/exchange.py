"""The exchange kind: declared over AMQP, every property immutable (a change replaces it)."""

from __future__ import annotations

from typing import Any

from provisioner.kinds.kind import Kind
from provisioner.plan import Action, value_text
from provisioner.topology.model import Exchange, canonical_arguments


def _describe(exchange: Exchange) -> str:
    flags = [exchange.type] + [f for f in ("internal", "auto_delete") if getattr(exchange, f)]
    if not exchange.durable:
        flags.append("transient")
    return ", ".join(flags + arguments_text(exchange.arguments))


def arguments_text(arguments: dict[str, Any]) -> list[str]:
    """``name=value`` for each argument, sorted: how create lines show a table."""
    return [f"{name}={value_text(value)}" for name, value in sorted(arguments.items())]


def _read(vhost: str, item: dict[str, Any]) -> Exchange:
    return Exchange(
        vhost,
        item["name"],
        item["type"],
        durable=bool(item.get("durable", True)),
        auto_delete=bool(item.get("auto_delete", False)),
        internal=bool(item.get("internal", False)),
        arguments=canonical_arguments(item.get("arguments")),
    )


EXCHANGE = Kind(
    "exchange",
    creation=60,
    deletion=50,
    actions=(Action.CREATE, Action.REPLACE, Action.DELETE),
    compared=("type", "durable", "auto_delete", "internal"),
    table="arguments",
    immutable=("type", "durable", "auto_delete", "internal", "*"),
    why="an exchange's properties and arguments cannot change on the broker",
    describe=_describe,
    definitions="exchanges",
    read=_read,
)
