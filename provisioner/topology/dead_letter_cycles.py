"""The dead-letter cycle check: queues whose dead letters come back to them, found in linear time."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from provisioner.errors import Problem
from provisioner.kinds.queue import QUEUE
from provisioner.topology.expand import Origin
from provisioner.topology.model import Binding, Key, Queue, Topology


def check_dead_letter_cycles(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """A queue whose dead letters come back to it (directly or through others) loops forever."""
    # A queue that sends its dead letters nowhere lies on no cycle: only the others are graph nodes.
    targets = {q.key: found for q in topology.queues if (found := _dead_letter_targets(topology, q))}
    cyclic = _on_cycles(targets)  # one linear pass; the path search below runs only where a cycle is
    if not cyclic:
        return  # the usual case: no need to walk every queue again
    reported: set[Key] = set()
    for start in topology.queues:
        if start.key not in cyclic:
            continue
        path = _cycle_from(start.key, targets, cyclic)
        if path and not reported.intersection(path):
            reported.update(path)
            names = " -> ".join(key[2] for key in [*path, path[0]])
            yield origins[start.key].problem(f"dead-letter cycle: {names}", at_key=True)


def _dead_letter_targets(topology: Topology, queue: Queue) -> list[Key]:
    """Queues that receive this queue's dead letters, by its DLX and routing key."""
    dead_letter = topology.dead_letter_of(queue.vhost, queue.name)
    key: str | None
    if dead_letter is not None:
        exchange, key = dead_letter.exchange, dead_letter.routing_key
    elif "x-dead-letter-exchange" in queue.arguments:
        exchange = queue.arguments["x-dead-letter-exchange"]
        key = queue.arguments.get("x-dead-letter-routing-key")
    else:
        return []
    if exchange == "" and key:
        return [(QUEUE.name, queue.vhost, key)]
    found = topology.exchange(queue.vhost, exchange)
    exchange_type = found.type if found is not None else "direct"
    return [
        (QUEUE.name, b.vhost, b.destination)
        for b in topology.bindings_from(queue.vhost, exchange)
        if b.destination_type == "queue" and _routes(exchange_type, b, key)
    ]


def _routes(exchange_type: str, binding: Binding, key: str | None) -> bool:
    """Whether a message with ``key`` (None: the message's own key) follows this binding."""
    if exchange_type in ("fanout", "headers") or key is None:
        return True
    if exchange_type == "topic":
        return _topic_pattern(binding.routing_key).fullmatch(key) is not None
    return binding.routing_key == key


@functools.lru_cache(maxsize=4096)
def _topic_pattern(routing_key: str) -> re.Pattern[str]:
    return re.compile(re.escape(routing_key).replace(r"\#", ".*").replace(r"\*", "[^.]*"))


def _on_cycles(targets: dict[Key, list[Key]]) -> set[Key]:
    """Every queue that lies on some cycle, in linear time."""
    return _strongly_connected_cyclic(_not_draining(targets))


def _not_draining(targets: dict[Key, list[Key]]) -> dict[Key, list[Key]]:
    """The graph without the queues whose dead letters surely end (peeled from the sinks back): usually empty."""
    edges = {node: [child for child in children if child in targets] for node, children in targets.items()}
    pending = {node: len(children) for node, children in edges.items()}
    sources: dict[Key, list[Key]] = {}
    for node, children in edges.items():
        for child in children:
            sources.setdefault(child, []).append(node)
    drained = [node for node, count in pending.items() if count == 0]
    while drained:
        for source in sources.get(drained.pop(), ()):
            pending[source] -= 1
            if pending[source] == 0:
                drained.append(source)
    return {node: children for node, children in edges.items() if pending[node]}


def _strongly_connected_cyclic(targets: dict[Key, list[Key]]) -> set[Key]:
    """The members of cyclic strongly connected components (Tarjan, iterative)."""
    index: dict[Key, int] = {}
    low: dict[Key, int] = {}
    stack: list[Key] = []
    on_stack: set[Key] = set()
    cyclic: set[Key] = set()
    for root in targets:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[Key, Iterator[Key]]] = [(root, iter(targets.get(root, [])))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(targets.get(child, []))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in targets.get(node, []):
                    cyclic.update(component)
    return cyclic


def _cycle_from(start: Key, targets: dict[Key, list[Key]], cyclic: set[Key]) -> list[Key]:
    """The first cycle through ``start``, as a list of queue keys, or []; only queues on cycles can be on it."""
    stack: list[tuple[Key, list[Key]]] = [(start, [start])]
    seen: set[Key] = set()
    while stack:
        node, path = stack.pop()
        for target in targets.get(node, []):
            if target == start:
                return path
            if target not in seen and target in cyclic:
                seen.add(target)
                stack.append((target, [*path, target]))
    return []
