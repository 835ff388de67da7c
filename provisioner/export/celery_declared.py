"""The queues a Celery app declares by itself (task_queues, its default queue), against the broker's.

A queue the app declares at worker start or on publish but the broker does not
hold yet is added to the export as Celery would declare it, so the topology
says what the app runs on; one the broker holds with other arguments is a
problem (the worker would fail with PRECONDITION_FAILED).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from provisioner.export.celery_routes import DEFAULT_EXCHANGE_TYPES
from provisioner.export.document import Note, VhostExport, exchange_entry, queue_entry
from provisioner.topology.model import Binding, Exchange, Queue, canonical_arguments


def declared_queues(app: Any) -> dict[str, Any]:
    """Every kombu Queue the app declares: task_queues and the default queue, by name."""
    queues = dict(app.amqp.queues)
    try:
        default = app.amqp.default_queue
    except KeyError:  # not in task_queues, and task_create_missing_queues is off: Celery has no default queue
        return queues
    if default is not None and default.name not in queues:
        queues[default.name] = default
    return queues


def broadcast_exchanges(app: Any) -> dict[str, str]:
    """The fanout exchanges of the app's broadcast queues (kombu ``Broadcast``) -> the queue's name in the app
    (its alias: task_queues holds it under the name given, its queue is named bcast.<uuid>)."""
    from kombu.common import Broadcast

    return {
        str(queue.exchange.name): str(name)
        for name, queue in declared_queues(app).items()
        if isinstance(queue, Broadcast) and queue.exchange is not None and queue.exchange.name
    }


def reconcile(app: Any, vhost: VhostExport) -> list[Note]:
    """Compare each declared queue with the broker's; add those the broker lacks to the vhost's body and topology.

    A broadcast queue (kombu ``Broadcast``) is a new auto-delete queue of every worker, under a random name:
    only its fanout exchange is exported.
    """
    notes: list[Note] = []
    broadcast = set(broadcast_exchanges(app))
    for name, declared in sorted(declared_queues(app).items()):
        if getattr(declared.exchange, "name", "") in broadcast:
            notes.append(_add_broadcast(vhost, declared))
            continue
        wanted = as_model(vhost.name, declared)
        live = vhost.queues.get(name)
        if live is None:
            notes.append(_add(vhost, declared, wanted))
        else:
            notes.extend(_compare(wanted, live))
        notes.extend(_compare_exchanges(vhost, declared))
    return notes


def _compare_exchanges(vhost: VhostExport, declared: Any) -> list[Note]:
    """An exchange the app declares with another type than the broker's: its workers fail at start."""
    live = {x.name: x for x in vhost.topology.exchanges}
    notes = []
    for exchange in _bindings(vhost.name, declared)[0]:
        held = live.get(exchange.name)
        if held is not None and held.type != exchange.type:
            message = (
                f"the app declares exchange {exchange.name!r} (queue {declared.name!r}) of type {exchange.type!r}, "
                f"the broker holds it as {held.type!r}: its workers would fail with PRECONDITION_FAILED"
            )
            notes.append(Note(("exchanges", exchange.name), message, True))
    return notes


def as_model(vhost: str, declared: Any) -> Queue:
    """A kombu Queue as the broker would hold it once Celery declared it."""
    from kombu.transport.base import to_rabbitmq_queue_arguments

    arguments = to_rabbitmq_queue_arguments(
        dict(declared.queue_arguments or {}),
        expires=declared.expires,
        message_ttl=declared.message_ttl,
        max_length=declared.max_length,
        max_length_bytes=declared.max_length_bytes,
        max_priority=declared.max_priority,
    )
    return Queue(
        vhost,
        declared.name,
        str(arguments.get("x-queue-type", "classic")),
        durable=bool(declared.durable),
        auto_delete=bool(declared.auto_delete),
        arguments=canonical_arguments({k: v for k, v in arguments.items() if k != "x-queue-type"}),
    )


def _compare(wanted: Queue, live: Queue) -> list[Note]:
    differences = [
        f"{name} {getattr(wanted, name)!r} (broker: {getattr(live, name)!r})"
        for name in ("type", "durable", "auto_delete", "arguments")
        if getattr(wanted, name) != getattr(live, name)
    ]
    if not differences:
        return []
    message = (
        f"the app declares queue {wanted.name!r} with {', '.join(differences)}: "
        "its workers would fail with PRECONDITION_FAILED"
    )
    return [Note(("queues", wanted.name), message, True)]


def _bindings(vhost: str, declared: Any) -> tuple[list[Exchange], list[Binding]]:
    """The exchanges and bindings Celery declares with a queue (its exchange, and kombu's extra bindings)."""
    exchanges, bindings = [], []
    pairs = [(declared.exchange, declared.routing_key, declared.binding_arguments)]
    pairs += [(b.exchange, b.routing_key, b.arguments) for b in getattr(declared, "bindings", None) or ()]
    for exchange, key, arguments in pairs:
        name = getattr(exchange, "name", "") or ""
        if not name:
            continue  # the default exchange: a queue is reachable by its name there
        if name not in DEFAULT_EXCHANGE_TYPES:
            exchanges.append(
                Exchange(
                    vhost,
                    name,
                    str(exchange.type or "direct"),
                    durable=bool(exchange.durable),
                    auto_delete=bool(exchange.auto_delete),
                    arguments=canonical_arguments(dict(exchange.arguments or {})),
                )
            )
        bound = canonical_arguments(dict(arguments or {}))
        bindings.append(Binding(vhost, name, declared.name, "queue", str(key or ""), bound))
    return exchanges, bindings


def _new_exchanges(vhost: VhostExport, exchanges: list[Exchange]) -> list[Exchange]:
    """The exchanges the export does not hold yet, written into its body (kept sorted); returned for its topology."""
    known = {x.name for x in vhost.topology.exchanges}
    new = [x for x in exchanges if x.name not in known]
    for exchange in new:
        vhost.body.setdefault("exchanges", {})[exchange.name] = exchange_entry(exchange)
    vhost.body["exchanges"] = dict(sorted(vhost.body.get("exchanges", {}).items()))
    return new


def _add_broadcast(vhost: VhostExport, declared: Any) -> Note:
    """A broadcast queue's fanout exchange, put into the export; its per-worker queues are Celery's."""
    exchanges, _ = _bindings(vhost.name, declared)
    vhost.topology = replace(vhost.topology, exchanges=(*vhost.topology.exchanges, *_new_exchanges(vhost, exchanges)))
    name = declared.exchange.name
    message = (
        f"exchange {name!r} is the exchange of the app's broadcast queue {declared.alias or name!r} "
        "(kombu Broadcast): every worker declares a queue of its own (bcast.<id>, auto-delete) bound to it, so "
        "the export keeps the exchange and leaves those queues to Celery"
    )
    return Note(("exchanges", name), message)


def _add(vhost: VhostExport, declared: Any, wanted: Queue) -> Note:
    """Put a queue Celery declares by itself into the export, with its exchange and bindings."""
    exchanges, bindings = _bindings(vhost.name, declared)
    new_exchanges = _new_exchanges(vhost, exchanges)
    vhost.body.setdefault("queues", {})[wanted.name] = queue_entry(wanted, bindings)
    vhost.body["queues"] = dict(sorted(vhost.body["queues"].items()))
    vhost.queues[wanted.name] = wanted
    vhost.topology = replace(
        vhost.topology,
        exchanges=(*vhost.topology.exchanges, *new_exchanges),
        queues=(*vhost.topology.queues, wanted),
        bindings=(*vhost.topology.bindings, *bindings),
    )
    if getattr(declared, "no_declare", False):  # kombu's Queue(no_declare=True): Celery never declares it
        message = (
            f"queue {wanted.name!r} is not on the broker yet, and the app never declares it (no_declare=True): "
            "it is exported as the app names it, so apply creates it"
        )
    else:
        message = (
            f"queue {wanted.name!r} is not on the broker yet: Celery declares it by itself (worker start, publish), "
            "so it is exported as the app declares it"
        )
    return Note(("queues", wanted.name), message)
