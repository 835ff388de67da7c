"""Pure: a Topology -> the nodes and edges of its picture, each marked with its drift status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from provisioner.kinds.exchange import EXCHANGE
from provisioner.kinds.queue import QUEUE
from provisioner.topology.model import DeadLetter, Key, Queue, Topology

DLX, DLRK = "x-dead-letter-exchange", "x-dead-letter-routing-key"
# A drift status, as the plan says it: the topology has it and the broker lacks it, both differ,
# or the broker has it and the topology does not.
MISSING, DIFFERS, UNMANAGED = "missing on the broker", "differs on the broker", "not in the topology"


@dataclass(frozen=True)
class Node:
    id: str
    vhost: str
    shape: str  # exchange | queue | external | task | publisher
    label: str
    status: str = ""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    style: str  # binding | dead_letter | retry | consumes | publishes
    label: str = ""
    status: str = ""


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = ()

    @property
    def vhosts(self) -> list[str]:
        return sorted({node.vhost for node in self.nodes})


@dataclass
class _Builder:
    status: Mapping[Key, str]
    nodes: dict[tuple[str, ...], Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def node(self, key: tuple[str, ...], vhost: str, shape: str, label: str, status: str = "") -> str:
        if key not in self.nodes:
            self.nodes[key] = Node(f"n{len(self.nodes) + 1}", vhost, shape, label, status or self.status.get(key, ""))
        return self.nodes[key].id

    def exchange(self, vhost: str, name: str, kind: str = "") -> str:
        if name == "":
            return self.node((EXCHANGE.name, vhost, ""), vhost, "exchange", "(default exchange)")
        label = f"{name} ({kind})" if kind else name
        shape = "exchange" if kind else "external"
        return self.node((EXCHANGE.name, vhost, name), vhost, shape, label)


def build(topology: Topology, status: Mapping[Key, str] | None = None, extra: Topology | None = None) -> Graph:
    """The picture of ``topology``; ``extra``: objects to draw beside it (the broker's, with --live)."""
    builder = _Builder(status or {})
    parts = [topology] + ([extra] if extra is not None else [])
    for part in parts:
        for exchange in part.exchanges:
            builder.exchange(exchange.vhost, exchange.name, exchange.type)
        for queue in part.queues:
            builder.node(queue.key, queue.vhost, "queue", f"{queue.name} ({queue.type})")
    for part in parts:
        for external in part.external_exchanges:
            builder.exchange(external.vhost, external.name)
        _bindings(builder, part)
        _dead_letters(builder, part.queues, part.dead_letters)
    _retries(builder, topology)
    _tasks(builder, topology)
    nodes = tuple(builder.nodes.values())
    edges = tuple(dict.fromkeys(builder.edges))  # an edge drawn once, whichever part named it
    return Graph(nodes, edges)


def _bindings(builder: _Builder, part: Topology) -> None:
    for binding in part.bindings:
        source = builder.exchange(binding.vhost, binding.source)
        if binding.destination_type == "queue":
            target = builder.node(
                (QUEUE.name, binding.vhost, binding.destination), binding.vhost, "queue", binding.destination
            )
        else:
            target = builder.exchange(binding.vhost, binding.destination)
        label = binding.routing_key or ("(headers match)" if binding.arguments else "")
        builder.edges.append(Edge(source, target, "binding", label, builder.status.get(binding.key, "")))


def _dead_letters(builder: _Builder, queues: Iterable[Queue], dead_letters: Iterable[DeadLetter]) -> None:
    """A queue's dead letters go to its dead-letter exchange (by argument, or by policy for dead_letter: via policy)."""
    targets: dict[tuple[str, str], tuple[str, str]] = {}
    for queue in queues:
        if DLX in queue.arguments:
            targets[(queue.vhost, queue.name)] = (str(queue.arguments[DLX]), str(queue.arguments.get(DLRK, "")))
    for item in dead_letters:
        targets.setdefault((item.vhost, item.queue), (item.exchange, item.routing_key))
    for (vhost, name), (exchange, key) in sorted(targets.items()):
        source = builder.node((QUEUE.name, vhost, name), vhost, "queue", name)
        if exchange == "" and key:  # the default exchange delivers to the queue the key names
            target = builder.node((QUEUE.name, vhost, key), vhost, "queue", key)
            builder.edges.append(Edge(source, target, "dead_letter", "dead letters (default exchange)"))
            continue
        label = f"dead letters [{key}]" if key else "dead letters"
        builder.edges.append(Edge(source, builder.exchange(vhost, exchange), "dead_letter", label))


def _retries(builder: _Builder, topology: Topology) -> None:
    """A failed task waits in its retry queue (published by the worker) before it returns to its work queue."""
    for retry in topology.retry_queues:
        work = builder.node((QUEUE.name, retry.vhost, retry.queue), retry.vhost, "queue", retry.queue)
        waiting = builder.node((QUEUE.name, retry.vhost, retry.name), retry.vhost, "queue", retry.name)
        builder.edges.append(Edge(work, waiting, "retry", f"retry after {retry.wait_ms / 1000:g}s"))


def _tasks(builder: _Builder, topology: Topology) -> None:
    """Celery tasks consume their queues; a foreign queue's messages come from a publisher that is not Celery."""
    vhost = topology.celery.vhost
    for route in topology.tasks:
        queue = builder.node((QUEUE.name, vhost, route.queue), vhost, "queue", route.queue)
        task = builder.node(("task", vhost, route.pattern), vhost, "task", f"task {route.pattern}")
        builder.edges.append(
            Edge(queue, task, "consumes", "foreign messages" if route.consume == "foreign" else "consumes")
        )
        if route.consume == "foreign":
            publisher = builder.node(("publisher", vhost, route.queue), vhost, "publisher", "foreign publisher")
            for binding in topology.bindings:
                if (
                    binding.vhost == vhost
                    and binding.destination_type == "queue"
                    and binding.destination == route.queue
                ):
                    builder.edges.append(Edge(publisher, builder.exchange(vhost, binding.source), "publishes"))
