"""Exchanges, queues and bindings: declared, deleted and bound over AMQP; a queue is replaced by a migration."""

from __future__ import annotations

from provisioner.broker.accounts import put_topic_permissions, topic_permissions_on
from provisioner.errors import UnsafeChange
from provisioner.executor import Executor, implements
from provisioner.handlers.changes import afters, befores
from provisioner.kinds.binding import BINDING
from provisioner.kinds.exchange import EXCHANGE
from provisioner.kinds.queue import QUEUE
from provisioner.migration.amqp import run_migration
from provisioner.plan import Action, Change
from provisioner.topology.model import Binding, Exchange, Queue


@implements(EXCHANGE, Action.CREATE)
def _declare_exchanges(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("declare", afters(changes, Exchange))


@implements(EXCHANGE, Action.REPLACE)
def _replace_exchanges(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Delete and declare again; the broker drops the exchange's bindings with it, so bind them again.

    RabbitMQ 4.3 drops the topic permissions on the exchange too: they are read first and put back.
    """
    for change in changes:
        (exchange,) = afters((change,), Exchange)
        rebind: list[Exchange | Queue | Binding] = [
            b
            for b in executor.desired.bindings
            if b.vhost == exchange.vhost
            and (b.source == exchange.name or (b.destination_type == "exchange" and b.destination == exchange.name))
        ]
        topics = topic_permissions_on(executor.management, exchange.vhost, exchange.name)
        executor.declare_all("delete", befores((change,), Exchange))
        executor.declare_all("declare", [exchange])
        executor.declare_all("bind", rebind)
        put_topic_permissions(executor.management, exchange.vhost, topics)


@implements(EXCHANGE, Action.DELETE)
def _delete_exchanges(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("delete", befores(changes, Exchange))


@implements(QUEUE, Action.CREATE)
def _declare_queues(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("declare", afters(changes, Queue))


@implements(QUEUE, Action.REPLACE)
def _replace_queues(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Move every message through a temporary queue (migration/steps.py); refused without --migrate."""
    endpoints = executor.endpoints
    for queue in afters(changes, Queue):
        report = run_migration(
            queue,
            endpoints.amqp_parameters(queue.vhost),
            executor.management,
            allow_consumers=executor.options.force,
            force=executor.options.force,
            backoff=executor.management.backoff,
        )
        executor.report.messages_migrated += report.restored  # messages, not moves: each moves out and back
        executor.mark_done()


@implements(QUEUE, Action.DELETE)
def _delete_queues(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Delete queues, looking at what they hold first: ready and unacknowledged (if-empty ignores the latter)."""
    if not executor.options.force:
        by_vhost: dict[str, list[str]] = {}
        for change in changes:
            by_vhost.setdefault(change.vhost, []).append(change.name)
        for vhost, names in by_vhost.items():
            for name, held in executor.held(vhost, names).items():
                if held.messages or held.consumers:
                    raise UnsafeChange(
                        f"queue {name!r} in {vhost!r} now holds {held.text()}; not deleted (--force deletes it)"
                    )
    executor.declare_all("delete", befores(changes, Queue))


@implements(BINDING, Action.CREATE)
def _bind(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("bind", afters(changes, Binding))


@implements(BINDING, Action.DELETE)
def _unbind(executor: Executor, changes: tuple[Change, ...]) -> None:
    executor.declare_all("unbind", befores(changes, Binding))
