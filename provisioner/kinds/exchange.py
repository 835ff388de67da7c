"""The exchange kind: declared over AMQP, every property immutable (a change replaces it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.kinds.kind import Kind, afters, befores
from provisioner.plan import Action, Change, value_text
from provisioner.topology.model import Binding, Exchange, Queue, canonical_arguments

if TYPE_CHECKING:
    from provisioner.apply import Executor


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


def _declare(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("declare", afters(changes, Exchange))


def _replace(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Delete and declare again; the broker drops the exchange's bindings with it, so bind them again."""
    for change in changes:
        (exchange,) = afters((change,), Exchange)
        rebind: list[Exchange | Queue | Binding] = [
            b
            for b in executor.desired.bindings
            if b.vhost == exchange.vhost
            and (b.source == exchange.name or (b.destination_type == "exchange" and b.destination == exchange.name))
        ]
        executor.declare_all("delete", befores((change,), Exchange))
        executor.declare_all("declare", [exchange])
        executor.declare_all("bind", rebind)


def _delete(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("delete", befores(changes, Exchange))


EXCHANGE = Kind(
    "exchange",
    creation=60,
    deletion=50,
    handlers={Action.CREATE: _declare, Action.REPLACE: _replace, Action.DELETE: _delete},
    compared=("type", "durable", "auto_delete", "internal"),
    table="arguments",
    immutable=("type", "durable", "auto_delete", "internal", "*"),
    why="an exchange's properties and arguments cannot change on the broker",
    describe=_describe,
    definitions="exchanges",
    read=_read,
)
