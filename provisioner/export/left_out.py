"""Pure: the exchanges and queues of a vhost an export leaves out as someone else's, named with whose."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from provisioner.kinds.exchange import EXCHANGE
from provisioner.kinds.queue import QUEUE
from provisioner.live_state import celery_owned
from provisioner.protected import owner_text
from provisioner.topology.model import BUILT_IN_EXCHANGE_TYPES, Topology

EVERY_VHOSTS_OWN = {*BUILT_IN_EXCHANGE_TYPES, "amq.rabbitmq.trace", "amq.rabbitmq.log"}  # made with each vhost


def left_out(vhost: str, definitions: dict[str, Any], kept: Topology) -> list[str]:
    """A note naming each exchange and queue the export leaves out as someone else's, and whose."""
    found: dict[str, list[str]] = defaultdict(list)
    for kind, names in ((EXCHANGE, {x.name for x in kept.exchanges}), (QUEUE, {q.name for q in kept.queues})):
        for item in definitions.get(kind.definitions) or []:
            name = str(item.get("name"))
            if name and name not in names and name not in EVERY_VHOSTS_OWN:
                owner = item.get("internal_owner")
                found[_protected(owner) if owner else _owner(kind.name, name)].append(f"{kind.name} {name!r}")
    return [
        f"left out of vhost {vhost!r} as {owner}: {_listed(sorted(objects))}"
        for owner, objects in sorted(found.items())
    ]


def _listed(objects: list[str], shown: int = 6) -> str:
    """Names, the first few of a long list (Celery's delayed delivery alone makes 57 objects)."""
    more = f" and {len(objects) - shown} more" if len(objects) > shown else ""
    return ", ".join(objects[:shown]) + more


def _protected(owner: Any) -> str:
    return (
        f"the broker's protected queues (owned by {owner_text(owner)}; RabbitMQ 4.1+ deletes them only with "
        "their owner, and a plugin declares them itself)"
    )


def _owner(kind: str, name: str) -> str:
    """Whose object the export leaves out, as a reader needs it to decide."""
    if celery_owned(kind, name):
        return "Celery's own (it declares them itself)"
    if name.startswith("amq."):
        return "the broker's (amq.* names are reserved: a client cannot declare them, so apply could not make them)"
    return "provisioner's own (its lock, probes)"


def dropped_bindings(vhost: str, definitions: dict[str, Any], kept: Topology) -> list[str]:
    """Bindings of the file whose exchange or queue is in neither the file nor the export, one line each.

    RabbitMQ 3.x's import skips them, 4.x's refuses the file (resources_missing); those of Celery's
    own and the broker's own objects are left out without a word, as their objects are.
    """
    exchanges = {x.name for x in kept.exchanges}
    queues = {q.name for q in kept.queues}
    listed = {str(item.get("name")) for kind in ("exchanges", "queues") for item in definitions.get(kind) or []}
    lines = []
    for item in definitions.get("bindings") or []:
        source, destination = str(item.get("source")), str(item.get("destination"))
        destination_type = str(item.get("destination_type"))
        missing = [name for name in (source, destination) if name not in listed and not _someone_elses(name)]
        present = (source in exchanges or source.startswith("amq.")) and destination in (
            queues if destination_type == "queue" else exchanges
        )
        if missing and not present and source != "":
            lines.append(
                f"binding of exchange {source!r} to {destination_type} {destination!r} (routing key "
                f"{item.get('routing_key', '')!r}) in vhost {vhost!r}: {missing[0]!r} is not among the "
                "definitions read (RabbitMQ's import skips such a binding, or refuses the file), left out"
            )
    return lines


def _someone_elses(name: str) -> bool:
    return name.startswith("amq.") or celery_owned(EXCHANGE.name, name) or celery_owned(QUEUE.name, name)
