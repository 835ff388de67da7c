"""The queue kind: declared over AMQP; a changed property or argument is a migration (apply --migrate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.errors import UnsafeChange
from provisioner.kinds.exchange import arguments_text
from provisioner.kinds.kind import Kind, afters, befores
from provisioner.plan import Action, Change
from provisioner.topology.model import Queue, canonical_arguments

if TYPE_CHECKING:
    from provisioner.apply import Executor


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


def _declare(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("declare", afters(changes, Queue))


def _replace(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Move every message through a temporary queue (migration/steps.py); refused without --migrate."""
    from provisioner.migration.amqp import run_migration

    endpoints = executor.endpoints
    for queue in afters(changes, Queue):
        report = run_migration(
            queue,
            endpoints.amqp_parameters(queue.vhost),
            executor.management,
            allow_consumers=executor.options.force,
            backoff=executor.management.backoff,
        )
        executor.report.messages_migrated += report.restored  # messages, not moves: each moves out and back
        executor.mark_done()


def _delete(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Delete queues, checking exact counts first: the management API's figures lag."""
    for change in changes:
        if not executor.options.force:
            counts = executor.amqp(change.vhost).queue_counts([change.name]).get(change.name)
            if counts is not None and any(counts):
                raise UnsafeChange(
                    f"queue {change.name!r} in {change.vhost!r} now holds {counts[0]} messages and "
                    f"{counts[1]} consumers; not deleted (--force deletes it)"
                )
    executor.declare_all("delete", befores(changes, Queue))


QUEUE = Kind(
    "queue",
    creation=70,
    deletion=40,
    handlers={Action.CREATE: _declare, Action.REPLACE: _replace, Action.DELETE: _delete},
    compared=("type", "durable", "auto_delete"),
    table="arguments",
    immutable=("type", "durable", "auto_delete", "*"),
    why="a queue's properties and arguments cannot change on the broker",
    describe=_describe,
    definitions="queues",
    read=_read,
)
