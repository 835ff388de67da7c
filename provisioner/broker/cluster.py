"""What only a cluster has: queues whose node is down, quorum queues with fewer members than asked.

Read when the endpoints name several nodes: one request for the cluster's nodes
and its version, one per vhost for where its queues live. A single node costs
nothing more. The plan carries what is found as :class:`ClusterNote` lines;
changes that the broker cannot make while a node is down leave the plan for a
note each, so apply makes the rest.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from provisioner.kinds.queue import QUEUE
from provisioner.plan import Action, Change, ClusterNote, Plan
from provisioner.topology.model import Binding, Queue, Topology

if TYPE_CHECKING:
    from provisioner.broker.management import Management

INITIAL_SIZE = "x-quorum-initial-group-size"


@dataclass(frozen=True)
class ClusterState:
    """The cluster's nodes (name -> running), whether its API adds quorum members, and where queues live."""

    nodes: dict[str, bool]
    adds_members: bool
    queues: dict[tuple[str, str], dict[str, Any]]  # (vhost, name) -> name, type, node, members

    @property
    def running(self) -> list[str]:
        return sorted(name for name, up in self.nodes.items() if up)


def read_cluster(management: Management, vhosts: Iterable[str]) -> ClusterState | None:
    """The cluster as the management API sees it; None for a single node."""
    nodes = {str(row["name"]): bool(row.get("running")) for row in management.cluster_nodes()}
    if len(nodes) < 2:
        return None
    version = tuple(int(part) for part in re.findall(r"\d+", str(management.overview().get("rabbitmq_version")))[:2])
    queues = {(vhost, str(row["name"])): row for vhost in vhosts for row in management.queue_placement(vhost)}
    return ClusterState(nodes, version >= (4, 0), queues)


def with_cluster(plan: Plan, desired: Topology, state: ClusterState | None) -> Plan:
    """The plan with a note per queue the cluster holds back, and without the changes it cannot make now."""
    if state is None:
        return plan
    notes: list[ClusterNote] = []
    down: dict[tuple[str, str], str] = {}
    for queue in desired.queues:
        row = state.queues.get((queue.vhost, queue.name))
        if row is None:
            continue
        node = row.get("node")
        if row.get("type", "classic") == "classic" and node and not state.nodes.get(str(node), False):
            down[(queue.vhost, queue.name)] = str(node)
            notes.append(_down_note(queue, str(node)))
        elif queue.type == "quorum":
            notes.extend(_membership_note(queue, row, state))
    blocked = [change for change in plan.changes if _blocked_by(change, down)]
    notes.extend(_blocked_note(change, down) for change in blocked if change.kind != QUEUE.name)
    lost = [name for name, up in sorted(state.nodes.items()) if not up]
    for change in plan.changes:
        if lost and change not in blocked and deletes_a_quorum_queue(change):
            blocked.append(change)
            notes.append(_lost_node_note(change, lost))
    kept = tuple(change for change in plan.changes if change not in blocked)
    return replace(plan, changes=kept, cluster=tuple(sorted(notes, key=lambda n: (n.vhost, n.queue, n.text))))


def deletes_a_quorum_queue(change: Change) -> bool:
    """A delete or replace of a quorum queue: its count cannot see what a lost node's consumer holds."""
    queue = change.before
    return isinstance(queue, Queue) and queue.type == "quorum" and change.action in (Action.DELETE, Action.REPLACE)


def _lost_node_note(change: Change, lost: list[str]) -> ClusterNote:
    queue = change.before
    assert isinstance(queue, Queue)
    text = (
        f"! queue {queue.name} in {queue.vhost!r} (quorum): not deleted or replaced while node(s) "
        f"{', '.join(lost)} are down: a consumer there may hold messages the broker counts nowhere; "
        f"run again once the node is back"
    )
    return ClusterNote(queue.vhost, queue.name, text)


def _down_note(queue: Queue, node: str) -> ClusterNote:
    text = f"! queue {queue.name} in {queue.vhost!r}: its node {node} is down; it cannot be changed until it returns"
    return ClusterNote(queue.vhost, queue.name, text)


def _blocked_by(change: Change, down: dict[tuple[str, str], str]) -> bool:
    """Whether the change touches a queue whose node is down (the broker refuses it until the node returns)."""
    resource = change.resource
    if isinstance(resource, Queue):
        return (resource.vhost, resource.name) in down
    if isinstance(resource, Binding) and resource.destination_type == "queue":
        return (resource.vhost, resource.destination) in down
    return False


def _blocked_note(change: Change, down: dict[tuple[str, str], str]) -> ClusterNote:
    binding = change.resource
    assert isinstance(binding, Binding)
    node = down[(binding.vhost, binding.destination)]
    text = (
        f"! {change.action.value} binding {binding.source} -> {binding.destination} "
        f"(routing key {binding.routing_key!r}) in {binding.vhost!r}: the queue's node {node} is down; "
        f"it cannot be made until that node returns"
    )
    return ClusterNote(binding.vhost, binding.destination, text)


def _membership_note(queue: Queue, row: dict[str, Any], state: ClusterState) -> list[ClusterNote]:
    """A note when the queue has fewer members on the cluster's nodes than the topology asks for."""
    members = sorted(str(member) for member in row.get("members") or [])
    on_cluster = [member for member in members if member in state.nodes]
    asked = min(int(queue.arguments.get(INITIAL_SIZE, len(state.nodes))), len(state.nodes))
    if len(on_cluster) >= asked or not members:
        return []
    candidates = [node for node in state.running if node not in on_cluster][: asked - len(on_cluster)]
    head = (
        f"~ queue {queue.name} in {queue.vhost!r} (quorum): {len(on_cluster)} member(s) ({', '.join(members)}), "
        f"the topology asks for {asked}"
    )
    if not candidates:
        return [ClusterNote(queue.vhost, queue.name, f"{head}; no running node without a member to add")]
    if state.adds_members:
        return [ClusterNote(queue.vhost, queue.name, f"{head}; apply adds {', '.join(candidates)}", tuple(candidates))]
    commands = " and ".join(add_member_command(queue, node) for node in candidates)
    return [
        ClusterNote(queue.vhost, queue.name, f"{head}; this RabbitMQ cannot add members by its API: run {commands}")
    ]


def add_member_command(queue: Queue, node: str) -> str:
    """The exact command that adds a member on ``node`` (run it where rabbitmq-queues reaches the cluster)."""
    return shlex.join(["rabbitmq-queues", "add_member", "-p", queue.vhost, queue.name, node])


def add_members(management: Management, notes: Iterable[ClusterNote]) -> int:
    """Add the members the plan's notes name (RabbitMQ 4.x); how many were added."""
    added = 0
    for note in notes:
        for node in note.add:
            management.add_quorum_member(note.vhost, note.queue, node)
            added += 1
    return added
