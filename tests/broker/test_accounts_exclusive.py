"""users_exclusive on a throwaway node: pruning users deletes every user of the cluster the topology
does not name, so it never runs against the machine's shared broker."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pika
import requests
from click.testing import Result
from nodes import ThrowawayNode, throwaway_node  # noqa: F401 - the fixture
from provision_cli import run as run_provision

TOPOLOGY = """
version: 1
users_exclusive: true
users:
  app: {password: "${APP_PASSWORD}", tags: [management]}
vhost: shop
permissions:
  app: {configure: "", write: ".*", read: ".*"}
"""
PASSWORD = "exclusive-secret-1"


def run(node: ThrowawayNode, *args: str) -> Result:
    env = {
        "APP_PASSWORD": PASSWORD,
        "PROVISION_AMQP_URL": node.amqp_url,
        "PROVISION_MANAGEMENT_URL": node.management_url,
    }
    result = run_provision(*args, env=env)
    assert PASSWORD not in result.output
    return result


def users(node: ThrowawayNode, auth: tuple[str, str] = ("guest", "guest")) -> dict[str, list[str]]:
    url = f"http://127.0.0.1:{node.config.management_port}/api/users"
    found = requests.get(url, auth=auth, timeout=10).json()
    return {u["name"]: u["tags"] for u in found}


def put_user(node: ThrowawayNode, name: str, tags: str) -> None:
    body = {"password": "p", "tags": tags}
    requests.put(f"{node.management_url}/api/users/{name}", json=body, timeout=10).raise_for_status()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "topology.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_prune_deletes_unnamed_users_but_never_the_connecting_user(
    throwaway_node: ThrowawayNode,  # noqa: F811
    tmp_path: Path,
) -> None:
    node = throwaway_node
    put_user(node, "extra", "")
    put_user(node, "boss", "administrator")
    file = write(tmp_path, TOPOLOGY)

    listed = run(node, "plan", file)
    assert "+ user app" in listed.output
    assert "user extra" in listed.output and "user boss" in listed.output  # listed, left alone without --prune

    planned = run(node, "plan", "--prune", file)
    assert "- user extra" in planned.output and "- user boss" in planned.output
    assert "user guest  (never pruned: provision connects as this user)" in planned.output

    applied = run(node, "apply", "--prune", file)
    assert applied.exit_code == 0, applied.output
    assert set(users(node)) == {"guest", "app"}
    assert run(node, "plan", "--prune", "--detailed-exitcode", file).exit_code == 0

    credentials = pika.PlainCredentials("app", PASSWORD)
    connection = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", node.config.amqp_port, "shop", credentials)
    )
    connection.close()


def test_the_last_administrator_is_never_removed(throwaway_node: ThrowawayNode, tmp_path: Path) -> None:  # noqa: F811
    node = throwaway_node
    put_user(node, "admin2", "administrator")
    live_hash = requests.get(f"{node.management_url}/api/users/guest", timeout=10).json()["password_hash"]
    demoted = write(
        tmp_path,
        TOPOLOGY.replace("users:\n", f"users:\n  guest: {{password_hash: '{live_hash}', tags: []}}\n"),
    )
    refused = run(node, "apply", "--prune", demoted)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "error: refusing to remove the last administrator (admin2, guest): keep a user tagged 'administrator' "
        "in the topology"
    ]
    assert users(node)["guest"] == ["administrator"] and "admin2" in users(node)
    # without --prune admin2 stays an administrator, so demoting guest is allowed
    assert run(node, "apply", demoted).exit_code == 0
    assert users(node, auth=("admin2", "p"))["guest"] == []
    restore = f"http://127.0.0.1:{node.config.management_port}/api/users/guest"
    body = {"password": "guest", "tags": "administrator"}
    requests.put(restore, json=body, auth=("admin2", "p"), timeout=10).raise_for_status()
