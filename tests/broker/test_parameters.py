"""Operator policies, federation upstreams, shovels and global parameters on a throwaway node with the
federation and shovel plugins on (the shared broker has neither, and global parameters are cluster-wide).

Every URI carries a password from the environment; no output may show it.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
import requests
from click.testing import CliRunner, Result
from nodes import ThrowawayNode, throwaway_node  # noqa: F401 - the fixture (a node without the plugins)
from provision_cli import run as run_provision

from provisioner.cli import main
from provisioner.parameters.core import Uri

PLUGINS = (
    "rabbitmq_management",
    "rabbitmq_shovel",
    "rabbitmq_shovel_management",
    "rabbitmq_federation",
    "rabbitmq_federation_management",
)
SECRET = f"s3cret-{uuid.uuid4().hex[:8]}"
TOPOLOGY = """
version: 1
vhost: shop
queues:
  legacy: {}
  orders: {}
permissions:
  keeper: {configure: ".*", write: ".*", read: ".*"}
operator_policies:
  cap: {pattern: "^orders$", apply_to: queues, priority: 1, definition: {max-length: 100000}}
federation_upstreams:
  origin: {uri: "${ORIGIN_URI}", ack_mode: on-confirm}
shovels:
  drain-legacy: {src_uri: "${SRC_URI}", src_queue: legacy, dest_uri: "${DEST_URI}", dest_queue: orders}
parameters:
  cluster_name: shop-prod
"""


@pytest.fixture(scope="module")
def node(broker: None) -> Iterator[ThrowawayNode]:
    """A node of this module's own with the shovel and federation plugins enabled before it starts."""
    started = ThrowawayNode()
    (started.config.folder / "enabled_plugins").write_text(f"[{','.join(PLUGINS)}].\n")
    try:
        started.start()
        api(started, "PUT", "users/keeper", json={"password": SECRET, "tags": ""})
        api(started, "PUT", "permissions/%2F/keeper", json={"configure": ".*", "write": ".*", "read": ".*"})
        yield started
    finally:
        started.destroy()


def api(node: ThrowawayNode, method: str, path: str, **kwargs: Any) -> Any:
    url = f"http://127.0.0.1:{node.config.management_port}/api/{path}"
    response = requests.request(method, url, auth=("guest", "guest"), timeout=30, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def environment(node: ThrowawayNode, vhost: str = "shop") -> dict[str, str]:
    """Every URI logs in as user keeper, whose password is the secret no output may show."""
    base = f"amqp://keeper:{SECRET}@127.0.0.1:{node.config.amqp_port}"
    return {
        "ORIGIN_URI": f"{base}/%2F",
        "SRC_URI": f"{base}/{vhost}",
        "DEST_URI": f"{base}/{vhost}",
        "PROVISION_AMQP_URL": node.amqp_url,
        "PROVISION_MANAGEMENT_URL": node.management_url,
    }


def run(env: dict[str, str], *args: str) -> Result:
    result = run_provision(*args, env=env)
    assert SECRET not in result.output, f"a URI's password was printed by {args}"
    return result


def write(tmp_path: Path, text: str = TOPOLOGY, vhost: str = "shop") -> str:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(textwrap.dedent(text).replace("vhost: shop", f"vhost: {vhost}"))
    return str(path)


@pytest.fixture
def vhost(node: ThrowawayNode) -> Iterator[str]:
    name = f"shop-{uuid.uuid4().hex[:8]}"
    yield name
    requests.delete(f"http://127.0.0.1:{node.config.management_port}/api/vhosts/{name}", auth=("guest", "guest"))


def parameter(node: ThrowawayNode, component: str, vhost: str, name: str) -> Any:
    return api(node, "GET", f"parameters/{component}/{quote(vhost, safe='')}/{name}")["value"]


def test_apply_creates_exactly_the_objects_and_the_next_plan_is_clean(
    node: ThrowawayNode, vhost: str, tmp_path: Path
) -> None:
    env, file = environment(node, vhost), write(tmp_path, vhost=vhost)
    planned = run(env, "plan", file)
    assert "+ operator_policy cap  (pattern '^orders$' on queues, priority 1: max-length=100000)" in planned.output
    assert f"uri: amqp://keeper:***@127.0.0.1:{node.config.amqp_port}/%2F" in planned.output
    assert "+ shovel drain-legacy" in planned.output
    assert run(env, "apply", file).exit_code == 0

    operator = api(node, "GET", f"operator-policies/{vhost}/cap")
    assert (operator["pattern"], operator["apply-to"], operator["priority"]) == ("^orders$", "queues", 1)
    assert operator["definition"] == {"max-length": 100000}
    assert parameter(node, "federation-upstream", vhost, "origin") == {
        "uri": env["ORIGIN_URI"],
        "ack-mode": "on-confirm",
    }
    assert parameter(node, "shovel", vhost, "drain-legacy") == {
        "src-uri": env["SRC_URI"],
        "src-queue": "legacy",
        "dest-uri": env["DEST_URI"],
        "dest-queue": "orders",
    }
    assert {"name": "cluster_name", "value": "shop-prod"} in api(node, "GET", "global-parameters")
    clean = run(env, "plan", "--detailed-exitcode", file)
    assert clean.exit_code == 0, clean.output
    assert run(env, "plan", "--json", file).exit_code == 0


def count(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def test_a_shovel_really_moves_the_messages(node: ThrowawayNode, vhost: str, tmp_path: Path) -> None:
    env, file = environment(node, vhost), write(tmp_path, vhost=vhost)
    assert run(env, "apply", file).exit_code == 0
    parameters = pika.ConnectionParameters(
        "127.0.0.1", node.config.amqp_port, vhost, pika.PlainCredentials("guest", "guest")
    )
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for index in range(25):
            channel.basic_publish("", "legacy", f"m{index}".encode(), pika.BasicProperties(delivery_mode=2))
        received = []
        for _, _, body in channel.consume("orders"):  # blocks until the shovel delivered each one
            received.append(body)
            if len(received) == 25:
                break
        channel.cancel()
    with pika.BlockingConnection(parameters) as connection:  # the unacked ones went back to orders
        channel = connection.channel()
        assert (count(channel, "legacy"), count(channel, "orders")) == (0, 25)
    assert sorted(received) == sorted(f"m{index}".encode() for index in range(25))


def test_hand_made_changes_are_changes_or_drift_and_apply_repairs_them(
    node: ThrowawayNode, vhost: str, tmp_path: Path
) -> None:
    env, file = environment(node, vhost), write(tmp_path, vhost=vhost)
    assert run(env, "apply", file).exit_code == 0
    hidden = env["ORIGIN_URI"].replace(SECRET, "other-password")
    api(node, "PUT", f"parameters/federation-upstream/{vhost}/origin", json={"value": {"uri": hidden}})
    api(node, "PUT", f"operator-policies/{vhost}/cap", json={"pattern": "^orders$", "definition": {"max-length": 5}})
    by_hand = {"pattern": ".*", "apply-to": "queues", "definition": {"max-length": 7}, "priority": 9}
    api(node, "PUT", f"operator-policies/{vhost}/by-hand", json=by_hand)
    api(node, "PUT", "global-parameters/cluster_name", json={"value": "renamed"})

    drift = run(env, "plan", "--detailed-exitcode", file)
    assert drift.exit_code == 2, drift.output
    as_json = run(env, "plan", "--json", file).output  # run() checks the password is in no output
    assert f"amqp://keeper:***@127.0.0.1:{node.config.amqp_port}/%2F" in as_json
    # the changed password is a change, never printed
    assert '~ federation_upstream origin  (ack-mode: (none) -> "on-confirm"; uri: (password))' in drift.output
    assert (
        '~ operator_policy cap  (apply-to: "all" -> "queues"; definition: {max-length: 5} -> {max-length: 100000}; '
        "priority: 0 -> 1)"
    ) in drift.output
    assert '~ global_parameter cluster_name  (value: "renamed" -> "shop-prod")' in drift.output
    assert "operator policy by-hand in" in drift.output  # not in the topology, tightens managed queues: drift
    assert "queue legacy: max-length: (none) -> 7" in drift.output

    assert run(env, "apply", file).exit_code == 0
    assert parameter(node, "federation-upstream", vhost, "origin")["uri"] == env["ORIGIN_URI"]
    assert api(node, "GET", f"operator-policies/{vhost}/cap")["definition"] == {"max-length": 100000}
    repaired = run(env, "plan", "--detailed-exitcode", file)
    assert repaired.exit_code == 2 and "operator policy by-hand" in repaired.output  # drift until --prune
    assert repaired.output.count("~ ") == 0 and repaired.output.count("+ ") == 0
    assert run(env, "apply", "--prune", file).exit_code == 0
    assert run(env, "plan", "--detailed-exitcode", file).exit_code == 0


def test_a_password_hidden_by_the_broker_is_compared_masked() -> None:
    desired = Uri("amqp://app:pw@host:5672/shop")
    assert desired.matches(Uri("amqp://app:pw@host:5672/shop"))
    assert desired.matches(Uri("amqp://app:***@host:5672/shop"))
    assert not desired.matches(Uri("amqp://app:***@other:5672/shop"))
    assert not desired.matches(Uri("amqp://app:pw2@host:5672/shop"))
    assert str(desired) == repr(desired) == "amqp://app:***@host:5672/shop"


PRUNED = """
version: 1
vhost: shop
queues:
  legacy: {}
  orders: {}
permissions:
  keeper: {configure: ".*", write: ".*", read: ".*"}
operator_policies: {}
federation_upstreams: {}
shovels:
  drain-legacy: {src_uri: "${SRC_URI}", src_queue: legacy, dest_uri: "${DEST_URI}", dest_queue: orders}
parameters:
  cluster_name: shop-prod
"""


def test_prune_removes_what_the_topology_lacks_and_global_parameters_only_when_owned(
    node: ThrowawayNode, vhost: str, tmp_path: Path
) -> None:
    env = environment(node, vhost)
    assert run(env, "apply", write(tmp_path, vhost=vhost)).exit_code == 0
    api(node, "PUT", "global-parameters/team-owned", json={"value": {"by": "another topology"}})
    smaller = write(tmp_path, PRUNED, vhost)

    listed = run(env, "plan", smaller)
    assert "operator_policy cap in" in listed.output and "federation_upstream origin in" in listed.output
    assert "team-owned" not in listed.output  # cluster-wide: another topology's, unless this one owns them all
    assert run(env, "apply", "--prune", smaller).exit_code == 0
    assert api(node, "GET", f"operator-policies/{vhost}") == []
    assert api(node, "GET", f"parameters/federation-upstream/{vhost}") == []
    assert [p["name"] for p in api(node, "GET", f"parameters/shovel/{vhost}")] == ["drain-legacy"]
    assert "team-owned" in {p["name"] for p in api(node, "GET", "global-parameters")}
    assert run(env, "plan", "--prune", "--detailed-exitcode", smaller).exit_code == 0

    owned = write(tmp_path, PRUNED.replace("version: 1\n", "version: 1\nparameters_exclusive: true\n"), vhost)
    planned = run(env, "plan", "--prune", owned)
    assert "- global_parameter team-owned" in planned.output
    assert "global_parameter internal_cluster_id  (never pruned: the broker's own)" in planned.output
    assert run(env, "apply", "--prune", owned).exit_code == 0
    assert {p["name"] for p in api(node, "GET", "global-parameters")} == {"cluster_name", "internal_cluster_id"}


def test_a_kind_whose_plugin_is_off_is_one_line_and_nothing_changes(
    throwaway_node: ThrowawayNode,  # noqa: F811 - a node with the management plugin only
    tmp_path: Path,
) -> None:
    env = environment(throwaway_node)
    file = write(tmp_path)
    planned = run(env, "plan", file)
    assert (
        "the topology has shovels, but the broker's rabbitmq_shovel and rabbitmq_shovel_management plugins are "
        "off: run `rabbitmq-plugins enable rabbitmq_shovel rabbitmq_shovel_management` on every node"
    ) in planned.output
    assert "rabbitmq-plugins enable rabbitmq_federation rabbitmq_federation_management" in planned.output
    applied = run(env, "apply", file)
    assert applied.exit_code != 0
    assert applied.output.count("\n") == 1 and "rabbitmq-plugins enable rabbitmq_shovel" in applied.output
    vhosts = requests.get(f"{throwaway_node.management_url}/api/vhosts", timeout=30).json()
    assert "shop" not in {v["name"] for v in vhosts}


def test_export_writes_the_kinds_with_placeholders_and_round_trips(
    node: ThrowawayNode, vhost: str, tmp_path: Path
) -> None:
    env = environment(node, vhost)
    assert run(env, "apply", write(tmp_path, vhost=vhost)).exit_code == 0
    before = {
        path: api(node, "GET", path)
        for path in (
            f"operator-policies/{vhost}",
            f"parameters/federation-upstream/{vhost}",
            f"parameters/shovel/{vhost}",
            f"vhosts/{vhost}/permissions",
        )
    }
    exported = tmp_path / "exported.yaml"
    assert run(env, "export", "--vhost", vhost, "--accounts", "-o", str(exported)).exit_code == 0
    text = exported.read_text()
    assert SECRET not in text and "keeper:***@" in text  # the comment says which URI, masked
    assert "uri: ${FEDERATION_UPSTREAM_ORIGIN_URI}" in text and "src_uri: ${SHOVEL_DRAIN_LEGACY_SRC_URI}" in text
    assert "operator_policies:\n  cap:\n" in text
    assert "password: ${USER_KEEPER_PASSWORD}" in text and "password_hash" not in text  # never a hash

    api(node, "DELETE", f"vhosts/{vhost}")
    secrets = {
        "FEDERATION_UPSTREAM_ORIGIN_URI": env["ORIGIN_URI"],
        "SHOVEL_DRAIN_LEGACY_SRC_URI": env["SRC_URI"],
        "SHOVEL_DRAIN_LEGACY_DEST_URI": env["DEST_URI"],
        "USER_KEEPER_PASSWORD": SECRET,
        "USER_GUEST_PASSWORD": "guest",
    }
    back = {**env, **secrets}
    assert run(back, "apply", str(exported)).exit_code == 0
    assert run(back, "plan", "--detailed-exitcode", str(exported)).exit_code == 0
    assert {path: api(node, "GET", path) for path in before} == before


LEAST = """
version: 1
vhost: shop
shovels:
  drain-legacy: {src_uri: "${SRC_URI}", src_queue: legacy, dest_uri: "${DEST_URI}", dest_queue: orders}
federation_upstreams:
  origin: {uri: "${ORIGIN_URI}"}
"""


def test_a_policymaker_writes_shovels_and_federation_but_operator_policies_need_an_administrator(
    node: ThrowawayNode, vhost: str, tmp_path: Path
) -> None:
    api(node, "PUT", f"vhosts/{vhost}")
    api(node, "PUT", "users/maker", json={"password": "maker-pw", "tags": "policymaker"})
    api(node, "PUT", f"permissions/{vhost}/maker", json={"configure": ".*", "write": ".*", "read": ".*"})
    env = environment(node, vhost) | {
        "PROVISION_MANAGEMENT_URL": f"http://maker:maker-pw@127.0.0.1:{node.config.management_port}"
    }
    with_operator = LEAST + 'operator_policies:\n  cap: {pattern: ".*", definition: {max-length: 10}}\n'
    refused = run(env, "apply", write(tmp_path, with_operator, vhost))
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "error: user 'maker' of the management API (tags: policymaker) may not write the plan's operator_policy "
        "changes: it needs the 'administrator' tag; nothing was changed"
    ]
    assert api(node, "GET", f"parameters/shovel/{vhost}") == []

    file = write(tmp_path, LEAST, vhost)
    assert run(env, "apply", file).exit_code == 0
    assert [p["name"] for p in api(node, "GET", f"parameters/shovel/{vhost}")] == ["drain-legacy"]
    assert run(env, "plan", "--detailed-exitcode", file).exit_code == 0


def test_a_broken_definition_is_one_line_at_its_place(tmp_path: Path) -> None:
    broken = write(tmp_path, 'version: 1\nvhosts:\n  shop:\n    shovels:\n      drain: {src_uri: "amqp://a:b@h"}\n')
    result = CliRunner().invoke(main, ["validate", broken])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"{broken}:5:14: 'dest_uri' is required (at vhosts.shop.shovels.drain)"

    sourceless = write(tmp_path, 'version: 1\nshovels:\n  drain: {src_uri: "amqp://h", dest_uri: "amqp://h"}\n')
    result = CliRunner().invoke(main, ["validate", sourceless])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"{sourceless}:3:3: shovel 'drain': a shovel needs src_queue, src_exchange or src_address (at shovels.drain)"
    )

    wrong = write(tmp_path, f'version: 1\nfederation_upstreams:\n  origin: {{uri: "amqps//app:{SECRET}@h"}}\n')
    result = CliRunner().invoke(main, ["validate", wrong])
    assert result.exit_code == 1 and SECRET not in result.output
    assert result.output.splitlines()[0] == (
        f"{wrong}:3:17: must be an amqp:// or amqps:// URI (the value is not shown: it may hold a password) "
        "(at federation_upstreams.origin.uri)"
    )

    beside = write(tmp_path, "version: 1\nvhosts:\n  shop: {}\nshovels: {}\n")
    result = CliRunner().invoke(main, ["validate", beside])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"{beside}:4:1: 'shovels' cannot stand beside 'vhosts'; move it under a vhost (at shovels)"
    )
