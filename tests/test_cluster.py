"""A three-node cluster of throwaway nodes: apply through one node, check through the others.

Quorum queues and streams get members on every node (or exactly ``initial_cluster_size``
of them), and the plan made through any node is clean.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nodes import ThrowawayCluster, ThrowawayNode, throwaway_cluster  # noqa: F401 - the fixture

from provisioner.apply import ApplyOptions, converge, make_plan
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.management import Management
from provisioner.topology import load

REPO = Path(__file__).parent.parent
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
