"""Brokers as users have them: dead-letter exchanges nobody declared, policies added by hand,
operator policies, quorum queues' delivery limits. Against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
from provision_cli import run, write
from rabbit import api, fresh_vhost, parameters, queue_policy, wait_for

from provisioner.diff import differences
from provisioner.live_state import live_from_definitions
from provisioner.output import plan_lines
from provisioner.topology import load


def q(name: str) -> str:
    return quote(name, safe="")


def put_policy(vhost: str, name: str, pattern: str, definition: dict, priority: int = 0, kind: str = "policies"):
    body = {"pattern": pattern, "definition": definition, "priority": priority, "apply-to": "queues"}
    api("PUT", f"{kind}/{q(vhost)}/{q(name)}", json=body).raise_for_status()


def broker_policy(vhost: str, queue: str, field: str = "policy") -> Any:
    """What the broker itself says applies to a queue (its own policy matching, for comparison)."""
    return queue_policy(vhost, queue, field)


def count(vhost: str, queue: str) -> int:
    """Messages in a queue, exactly, by a passive declare."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


# --- Dead letters that go nowhere ---------------------------------------------------------------

UNKNOWN_DLX = """
version: 1
vhost: v
queues:
  billing:
    arguments: {x-dead-letter-exchange: billing.dlx}
  shipping:
    policy: {dead-letter-exchange: shipping.dlx}
policies:
  everything:
    pattern: "^zz"
    definition: {dead-letter-exchange: lost.dlx}
"""


def test_validate_refuses_a_dead_letter_exchange_nobody_declares_at_its_line(tmp_path: Path) -> None:
    file = write(tmp_path, UNKNOWN_DLX)
    result = run("validate", file)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{file}:5:41: dead-letter exchange 'billing.dlx' is not defined in vhost 'v'" in lines[0]
    assert f"{file}:7:36: dead-letter exchange 'shipping.dlx'" in lines[1]
    assert f"{file}:11:40: dead-letter exchange 'lost.dlx'" in lines[2]
    assert "external_exchanges" in lines[0] and "Traceback" not in result.output


def test_validate_accepts_external_defined_and_default_dead_letter_exchanges(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        """
        version: 1
        vhost: v
        external_exchanges: [billing.dlx]
        exchanges:
          shipping.dlx: {type: fanout}
        queues:
          billing:
            arguments: {x-dead-letter-exchange: billing.dlx}
          shipping:
            policy: {dead-letter-exchange: shipping.dlx}
          by-key:
            arguments: {x-dead-letter-exchange: "", x-dead-letter-routing-key: shipping}
          shared:
            dead_letter: {exchange: billing.dlx, queue: shipping}
        """,
    )
    result = run("validate", file)
    assert result.exit_code == 0, result.output
    topology = load([file])
    # a dead_letter naming an external exchange references it: nothing of that name is created
    assert [x.name for x in topology.exchanges] == ["shipping.dlx"]


def test_an_external_exchange_cannot_also_be_defined(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        """
        version: 1
        vhost: v
        external_exchanges: [x]
        exchanges:
          x: {type: direct}
        """,
    )
    result = run("validate", file)
    assert result.exit_code == 1
    assert f"{file}:3:22: exchange 'x' is defined in vhost 'v'" in result.output


EXTERNAL = """
version: 1
vhost: ${TEST_VHOST}
external_exchanges: [billing.dlx]
queues:
  billing:
    arguments: {x-dead-letter-exchange: billing.dlx, x-dead-letter-routing-key: failed}
  parking:
    bindings: [{exchange: billing.dlx, routing_key: failed}]
"""


@pytest.mark.broker
def test_a_missing_external_exchange_fails_plan_and_apply_before_any_write(tmp_path: Path) -> None:
    file = write(tmp_path, EXTERNAL)
    with fresh_vhost("brownfield") as vhost:
        planned = run("plan", file, vhost=vhost)
        assert planned.exit_code == 1
        assert "Problems (apply refuses to start until they are fixed):" in planned.output
        assert "external exchange 'billing.dlx' does not exist in vhost" in planned.output
        assert "+ queue billing" in planned.output  # the rest of the plan is still shown

        applied = run("apply", file, vhost=vhost)
        assert applied.exit_code == 1
        assert applied.output.count("\n") == 1 and applied.output.startswith("error: external exchange 'billing.dlx'")
        assert "nothing was changed" in applied.output
        assert api("GET", f"queues/{q(vhost)}").json() == []

        # the exchange exists once its owner declares it: then plan, apply and prune leave it alone
        connection = pika.BlockingConnection(parameters(vhost))
        channel = connection.channel()
        channel.exchange_declare("billing.dlx", "direct", durable=True)
        assert run("apply", file, vhost=vhost).exit_code == 0
        again = run("plan", "--detailed-exitcode", "--prune", file, vhost=vhost)
        assert again.exit_code == 0, again.output
        assert "billing.dlx" not in again.output
        assert run("apply", "--prune", file, vhost=vhost).exit_code == 0
        channel.exchange_declare("billing.dlx", "direct", durable=True, passive=True)

        # and a rejected message really reaches the queue behind the external exchange
        channel.basic_publish("", "billing", b"failed task")
        wait_for(lambda: count(vhost, "billing") == 1)
        method, _, _ = channel.basic_get("billing")
        channel.basic_reject(method.delivery_tag, requeue=False)
        wait_for(lambda: count(vhost, "parking") == 1)
        connection.close()


def test_a_missing_external_exchange_in_a_vhost_still_to_create_is_a_problem(tmp_path: Path, vhost_name: str) -> None:
    file = write(tmp_path, EXTERNAL)
    result = run("apply", file, vhost=vhost_name)
    assert result.exit_code == 1 and "external exchange 'billing.dlx'" in result.output
    assert api("GET", f"vhosts/{q(vhost_name)}").status_code == 404  # not even the vhost was made


# --- Quorum queues' delivery limits ----------------------------------------------------------

QUORUM = """
version: 1
vhost: ${TEST_VHOST}
queues:
  plain: {type: quorum}
  by-argument: {type: quorum, delivery_limit: 5, policy: {delivery-limit: 7}}
  by-policy: {type: quorum, policy: {delivery-limit: 7}}
  parked: {type: quorum, dead_letter: true}
"""


def test_validate_warns_about_a_quorum_queue_that_would_drop_messages(tmp_path: Path) -> None:
    file = write(tmp_path, QUORUM)
    result = run("validate", file, vhost="v")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if ": warning: " in line]
    assert warnings == [
        f"{file}:4:3: warning: quorum queue without delivery_limit and without dead-lettering: RabbitMQ 4.x gives "
        "it a delivery limit of 20 and then drops the message (set delivery_limit, or dead_letter) (at queues.plain)"
    ]


@pytest.mark.broker
def test_plan_shows_the_delivery_limit_each_quorum_queue_gets(tmp_path: Path) -> None:
    file = write(tmp_path, QUORUM)
    with fresh_vhost("brownfield") as vhost:
        version = api("GET", "overview").json()["rabbitmq_version"]
        planned = run("plan", file, vhost=vhost)
        assert planned.exit_code == 0, planned.output
        lines = {line.split("  (")[0].strip(): line for line in planned.output.splitlines() if "+ queue" in line}
        assert "delivery-limit 5 (argument x-delivery-limit)" in lines["+ queue by-argument"]
        assert "delivery-limit 7 (policy provisioner.by-policy)" in lines["+ queue by-policy"]
        if version.startswith("3."):
            assert f"delivery-limit unlimited (no default on RabbitMQ {version})" in lines["+ queue plain"]
        else:
            assert "delivery-limit 20 (the broker's default on 4.x)" in lines["+ queue plain"]
        assert run("apply", file, vhost=vhost).exit_code == 0
        document = json.loads(run("plan", "--json", file, vhost=vhost).output)
        queues = {item["queue"]: item for item in document["queues"]}
        assert queues["by-policy"]["policy"] == "provisioner.by-policy"
        assert (queues["by-policy"]["delivery_limit"], queues["by-argument"]["delivery_limit"]) == (7, 5)
        # the broker applies the policy we say it applies
        wait_for(lambda: broker_policy(vhost, "by-policy") == "provisioner.by-policy")


def test_on_rabbitmq_4_a_quorum_queue_without_a_limit_shows_the_default_of_20(tmp_path: Path) -> None:
    """Recorded definitions of a 4.x broker (the broker on this machine is 3.x)."""
    file = write(tmp_path, QUORUM)
    desired = load([file], environ={"TEST_VHOST": "v"})
    live = live_from_definitions("v", {"rabbit_version": "4.0.5", "queues": [], "exchanges": [], "bindings": []})
    plan = differences(desired, {"v": live})
    text = "\n".join(line for line, _ in plan_lines(plan))
    assert "+ queue plain  (quorum; delivery-limit 20 (the broker's default on 4.x))" in text
    assert {s.queue: s.delivery_limit for s in plan.settings}["plain"] == 20


# --- Hidden drift -------------------------------------------------------------------------------

MANAGED = """
version: 1
vhost: ${TEST_VHOST}
queues:
  orders: {policy: {max-length: 100}}
  audit: {}
"""


@pytest.mark.broker
def test_a_hand_added_policy_on_a_managed_queue_is_drift_and_elsewhere_only_unmanaged(tmp_path: Path) -> None:
    file = write(tmp_path, MANAGED)
    with fresh_vhost("brownfield") as vhost:
        assert run("apply", file, vhost=vhost).exit_code == 0
        put_policy(vhost, "ops-ttl", "^audit$", {"message-ttl": 60000})

        drift = run("drift", file, vhost=vhost)
        assert drift.exit_code == 2, drift.output
        assert "DRIFT" in drift.output
        assert "drift: policy 'ops-ttl' in" in drift.output
        assert "changes queue audit: message-ttl: (none) -> 60000" in drift.output
        assert run("plan", "--detailed-exitcode", file, vhost=vhost).exit_code == 2
        document = json.loads(run("plan", "--json", file, vhost=vhost).output)
        assert [(d["name"], d["hits"][0]["name"]) for d in document["drift"]] == [("ops-ttl", "audit")]
        effective = {item["queue"]: item for item in document["queues"]}
        assert effective["audit"]["policy"] == "ops-ttl" and effective["audit"]["definition"] == {"message-ttl": 60000}
        assert effective["orders"]["policy"] == "provisioner.orders"
        wait_for(lambda: broker_policy(vhost, "audit") == "ops-ttl")  # the broker picked the same policy

        kept = run("apply", file, vhost=vhost)  # without --prune apply leaves it, and says so
        assert kept.exit_code == 0 and "No changes. 1 object(s) not in the topology change managed ones" in kept.output
        assert broker_policy(vhost, "audit") == "ops-ttl"

        # the same policy on a pattern no managed object matches: listed, not drift
        put_policy(vhost, "ops-ttl", "^legacy$", {"message-ttl": 60000})
        quiet = run("drift", file, vhost=vhost)
        assert quiet.exit_code == 0, quiet.output
        assert "no drift" in quiet.output
        assert "unmanaged (not drift): policy 'ops-ttl'" in quiet.output
        assert run("plan", "--detailed-exitcode", file, vhost=vhost).exit_code == 0


@pytest.mark.broker
def test_a_hand_added_policy_that_shadows_a_topology_policy_is_drift_until_pruned(tmp_path: Path) -> None:
    file = write(tmp_path, MANAGED)
    with fresh_vhost("brownfield") as vhost:
        assert run("apply", file, vhost=vhost).exit_code == 0
        put_policy(vhost, "ops-high", "^ord", {"message-ttl": 1000}, priority=5)
        wait_for(lambda: broker_policy(vhost, "orders") == "ops-high")

        drift = run("drift", file, vhost=vhost)
        assert drift.exit_code == 2, drift.output
        assert (
            "changes queue orders: shadows policy provisioner.orders; max-length: 100 -> (none), "
            "message-ttl: (none) -> 1000" in drift.output
        )
        pruned = run("apply", "--prune", file, vhost=vhost)
        assert pruned.exit_code == 0, pruned.output
        assert "- policy ops-high" in pruned.output
        assert run("drift", file, vhost=vhost).exit_code == 0
        wait_for(lambda: broker_policy(vhost, "orders") == "provisioner.orders")


@pytest.mark.broker
def test_an_operator_policy_that_tightens_a_managed_queue_is_drift_and_pruned(tmp_path: Path) -> None:
    file = write(tmp_path, MANAGED)
    with fresh_vhost("brownfield") as vhost:
        assert run("apply", file, vhost=vhost).exit_code == 0
        put_policy(vhost, "op-limits", "^(orders|audit)$", {"max-length": 10}, kind="operator-policies")
        wait_for(lambda: broker_policy(vhost, "orders", "operator_policy") == "op-limits")
        assert broker_policy(vhost, "orders", "effective_policy_definition")["max-length"] == 10

        drift = run("drift", file, vhost=vhost)
        assert drift.exit_code == 2, drift.output
        assert "drift: operator policy 'op-limits' in" in drift.output
        assert "changes queue orders: max-length: 100 -> 10" in drift.output
        assert "changes queue audit: max-length: (none) -> 10" in drift.output

        pruned = run("apply", "--prune", file, vhost=vhost)
        assert pruned.exit_code == 0, pruned.output
        assert api("GET", f"operator-policies/{q(vhost)}").json() == []
        assert run("drift", file, vhost=vhost).exit_code == 0


@pytest.mark.broker
def test_drift_lists_unmanaged_objects_and_never_promises_to_delete(tmp_path: Path) -> None:
    file = write(tmp_path, MANAGED)
    help_text = run("drift", "--help").output
    assert "Delete objects" not in help_text and "never changes or deletes anything" in " ".join(help_text.split())
    with fresh_vhost("brownfield") as vhost:
        assert run("apply", file, vhost=vhost).exit_code == 0
        connection = pika.BlockingConnection(parameters(vhost))
        connection.channel().queue_declare("legacy", durable=True)
        connection.close()
        result = run("drift", file, vhost=vhost)
        assert result.exit_code == 0, result.output
        assert "unmanaged (not drift): queue 'legacy'" in result.output
        pruning = run("drift", "--prune", file, vhost=vhost)
        assert pruning.exit_code == 2 and "drift: delete queue 'legacy'" in pruning.output
        assert count(vhost, "legacy") == 0  # still there: the check deleted nothing


def test_the_pre_commit_snippets_do_not_name_a_tag_that_does_not_exist() -> None:
    root = Path(__file__).resolve().parent.parent.parent
    for name in ("README.md", "docs/pre-commit.md", ".pre-commit-hooks.yaml"):
        assert "rev: v0.1.0" not in (root / name).read_text(), name


@pytest.mark.broker
def test_quickstart_works_in_a_vhost_of_its_own() -> None:
    root = Path(__file__).resolve().parent.parent.parent
    vhost = f"quickstart-{uuid.uuid4().hex[:10]}"
    try:
        result = subprocess.run(
            ["bash", "scripts/quickstart.sh"],
            cwd=root,
            env={**os.environ, "PROVISION_QUICKSTART_VHOST": vhost},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"applying topologies/seed.yaml in vhost '{vhost}'" in result.stdout
        queues = {item["name"] for item in api("GET", f"queues/{q(vhost)}").json()}
        assert queues == {"celery", "celery.dead", "example", "example.dead"}
    finally:
        api("DELETE", f"vhosts/{q(vhost)}")
