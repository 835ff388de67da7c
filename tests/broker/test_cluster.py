"""A three-node cluster of throwaway nodes: apply through one node, check through the others.

Quorum queues and streams get members on every node (or exactly ``initial_cluster_size``
of them), and the plan made through any node is clean.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pika
import pytest
from click.testing import CliRunner
from nodes import ThrowawayCluster, ThrowawayNode, throwaway_cluster  # noqa: F401 - the fixture
from rabbit import api, wait_for

from provisioner import cli
from provisioner.apply import ApplyOptions, converge, make_plan
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.management import Management
from provisioner.topology import load

REPO = Path(__file__).parent.parent.parent
SIZED = """\
version: 1
vhost: shop
queues:
  sized.quorum: {type: quorum, initial_cluster_size: 2}
  sized.stream: {type: stream, initial_cluster_size: 2}
"""


def endpoints_of(node: ThrowawayNode) -> Endpoints:
    return Endpoints(node.amqp_url, node.management_url)


def members_seen_by(node: ThrowawayNode, name: str, vhost: str = "shop") -> list[str]:
    """The nodes that hold a replica of a quorum queue or stream, as ``rabbitmqctl`` on that node lists them."""
    rows = json.loads(node.ctl("list_queues", "-p", vhost, "name", "members", "--formatter", "json").stdout)
    return sorted(next(row["members"] for row in rows if row["name"] == name))


@pytest.fixture(scope="module")
def shop_applied(throwaway_cluster: ThrowawayCluster, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:  # noqa: F811
    """The shop topology (and two sized queues) applied through the first node."""
    os.environ["SHOP_VHOST"] = "shop"
    folder = tmp_path_factory.mktemp("shop")
    sized = folder / "sized.yaml"
    sized.write_text(SIZED)
    files = [REPO / "topologies/shop.yaml", sized]
    first = endpoints_of(throwaway_cluster.nodes[0])
    report = converge(load(files), first, Management(first), ApplyOptions())
    assert not report.plan.is_empty
    return files


def test_quorum_queues_and_streams_have_a_member_on_every_node(
    throwaway_cluster: ThrowawayCluster,  # noqa: F811
    shop_applied: list[Path],
) -> None:
    desired = load(shop_applied)
    replicated = [q for q in desired.queues if q.type in ("quorum", "stream") and not q.name.startswith("sized.")]
    assert {q.type for q in replicated} == {"quorum", "stream"}
    for node in throwaway_cluster.nodes[1:]:
        for queue in replicated:
            members = members_seen_by(node, queue.name)
            assert members == sorted(throwaway_cluster.names), queue.name


def test_initial_cluster_size_is_the_number_of_members(
    throwaway_cluster: ThrowawayCluster,  # noqa: F811
    shop_applied: list[Path],
) -> None:
    for node in throwaway_cluster.nodes[1:]:
        for name in ("sized.quorum", "sized.stream"):
            members = members_seen_by(node, name)
            assert len(members) == 2 and set(members) <= set(throwaway_cluster.names), (name, members)


def test_the_plan_is_clean_through_every_node(
    throwaway_cluster: ThrowawayCluster,  # noqa: F811
    shop_applied: list[Path],
) -> None:
    desired = load(shop_applied)
    for node in throwaway_cluster.nodes:
        endpoints = endpoints_of(node)
        plan = make_plan(desired, Management(endpoints), endpoints=endpoints)
        assert plan.in_sync and not plan.problems, (node.config.name, plan.changes, plan.problems)


HELD = """\
version: 1
vhost: held
exchanges:
  work: {type: direct}
queues:
  homed: {bindings: [{exchange: work, routing_key: homed}]}
  safe: {type: quorum, bindings: [{exchange: work, routing_key: safe}]}
  fresh: {}
"""


def cluster_endpoints(cluster: ThrowawayCluster) -> Endpoints:
    return Endpoints(
        ",".join(node.amqp_url for node in cluster.nodes), ",".join(node.management_url for node in cluster.nodes)
    )


def make_vhost(node: ThrowawayNode, vhost: str) -> None:
    base = node.management_url.replace("guest:guest@", "")
    api("PUT", f"vhosts/{vhost}", base).raise_for_status()
    api("PUT", f"permissions/{vhost}/guest", base, json={"configure": ".*", "write": ".*", "read": ".*"})


def test_a_queue_whose_node_is_down_is_one_line_and_the_rest_is_applied(
    throwaway_cluster: ThrowawayCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    first, third = throwaway_cluster.nodes[0], throwaway_cluster.nodes[2]
    make_vhost(first, "held")
    connection = pika.BlockingConnection(third.parameters("held"))
    connection.channel().queue_declare("homed", durable=True)  # a classic queue lives on the node it was declared on
    connection.close()
    (tmp_path / "held.yaml").write_text(HELD)
    desired, endpoints = load([tmp_path / "held.yaml"]), cluster_endpoints(throwaway_cluster)
    third.stop()
    try:
        plan = make_plan(desired, Management(endpoints), endpoints=endpoints)
        texts = [note.text for note in plan.cluster]
        assert (
            f"! queue homed in 'held': its node {third.config.name} is down; it cannot be changed until it returns"
            in texts
        )
        assert any(text.startswith("! create binding work -> homed") for text in texts), texts
        assert {(c.kind, c.name) for c in plan.changes} >= {("queue", "safe"), ("queue", "fresh")}
        assert not [c for c in plan.changes if "homed" in str(c.resource)]
        converge(desired, endpoints, Management(endpoints), ApplyOptions())
        again = make_plan(desired, Management(endpoints), endpoints=endpoints)
        assert not again.changes and [note.text for note in again.cluster] == texts  # held back, the rest done
        output = CliRunner().invoke(
            cli.main,
            ["plan", str(tmp_path / "held.yaml")],
            env={"PROVISION_AMQP_URL": endpoints.amqp_url, "PROVISION_MANAGEMENT_URL": endpoints.management_url},
        )
        assert f"      ! queue homed in 'held': its node {third.config.name} is down" in output.stdout, output.output
    finally:
        third.start()
        throwaway_cluster.wait_running(throwaway_cluster.names)
    back = make_plan(desired, Management(endpoints), endpoints=endpoints)
    assert not back.cluster and [c.kind for c in back.changes] == ["binding"]
    converge(desired, endpoints, Management(endpoints), ApplyOptions())
    assert make_plan(desired, Management(endpoints), endpoints=endpoints).in_sync


def test_a_quorum_queue_short_of_members_is_shown_and_grown(
    throwaway_cluster: ThrowawayCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    first, third = throwaway_cluster.nodes[0], throwaway_cluster.nodes[2]
    (tmp_path / "members.yaml").write_text("version: 1\nvhost: members\nqueues:\n  grow: {type: quorum}\n")
    desired, endpoints = load([tmp_path / "members.yaml"]), cluster_endpoints(throwaway_cluster)
    converge(desired, endpoints, Management(endpoints), ApplyOptions())
    assert members_seen_by(first, "grow", "members") == sorted(throwaway_cluster.names)
    # The third machine is replaced: forgotten by the cluster, then a new node of the same name joins.
    third.stop()
    first.ctl("forget_cluster_node", third.config.name)
    third.wipe()
    third.start()
    throwaway_cluster.join(third)
    throwaway_cluster.wait_running(throwaway_cluster.names)

    # The management API's member lists come with its statistics, a few seconds behind the broker: right
    # after the rejoin they can still name the forgotten member.
    assert wait_for(lambda: make_plan(desired, Management(endpoints), endpoints=endpoints).cluster, timeout=120)
    plan = make_plan(desired, Management(endpoints), endpoints=endpoints)
    [note] = plan.cluster
    assert note.text.startswith("~ queue grow in 'members' (quorum): 2 member(s) (") and "asks for 3" in note.text
    assert third.config.name not in note.text.split("asks for")[0]
    if note.add:  # RabbitMQ 4.x: apply adds the member through the management API
        assert note.add == (third.config.name,)
        converge(desired, endpoints, Management(endpoints), ApplyOptions())
    else:  # 3.x: the exact command, run as printed
        command = shlex.split(note.text.split("; this RabbitMQ cannot add members by its API: run ")[1])
        assert command == ["rabbitmq-queues", "add_member", "-p", "members", "grow", third.config.name]
        first.ctl(*command[1:], tool=command[0])
    assert members_seen_by(first, "grow", "members") == sorted(throwaway_cluster.names)
    # The management API's member lists come with its statistics, a few seconds behind the broker.
    wait_for(lambda: make_plan(desired, Management(endpoints), endpoints=endpoints).in_sync, timeout=120)


def test_a_quorum_queue_is_not_pruned_while_a_node_is_down(
    throwaway_cluster: ThrowawayCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A consumer on a lost node keeps messages checked out that no count shows: no delete until it is back."""
    first, third = throwaway_cluster.nodes[0], throwaway_cluster.nodes[2]
    both = tmp_path / "both.yaml"
    both.write_text("version: 1\nvhost: lost\nqueues:\n  keep: {type: quorum}\n  gone: {type: quorum}\n")
    endpoints = Endpoints(first.amqp_url, first.management_url)
    converge(load([both]), endpoints, Management(endpoints), ApplyOptions())
    (tmp_path / "keep.yaml").write_text("version: 1\nvhost: lost\nqueues:\n  keep: {type: quorum}\n")
    keep = load([tmp_path / "keep.yaml"])
    third.stop()
    try:
        plan = make_plan(keep, Management(endpoints), prune=True, endpoints=endpoints)
        assert not [change for change in plan.changes if change.name == "gone"]
        [note] = [note for note in plan.cluster if note.queue == "gone"]
        assert third.config.name in note.text and "not deleted" in note.text
    finally:
        third.start()
        throwaway_cluster.wait_running(throwaway_cluster.names)
    wait_for(lambda: all(row.get("running") for row in Management(endpoints).cluster_nodes()), timeout=120)
    plan = make_plan(keep, Management(endpoints), prune=True, endpoints=endpoints)
    assert [(change.action.value, change.name) for change in plan.changes] == [("delete", "gone")]
