"""plan, apply and drift against the real broker: create, converge, detect drift, repair, refuse."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
import rabbit
from kombu import Connection
from kombu import Exchange as KombuExchange
from kombu import Queue as KombuQueue
from provision_cli import run, write
from rabbit import DENY_DEPRECATED, MANAGEMENT_URL, amqp_url, api, endpoints, parameters

from provisioner.apply import ApplyOptions, converge, make_plan
from provisioner.broker.management import Management
from provisioner.broker.reads import read_requests
from provisioner.topology import load

REPO = Path(__file__).resolve().parent.parent.parent

TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  orders: {type: topic}
  audit: {type: fanout, internal: true, bindings: [{exchange: orders, routing_key: "#"}]}
  notify: {type: headers}
queues:
  orders:
    type: quorum
    delivery_limit: 5
    bindings:
      - {exchange: orders, routing_key: order.created}
    dead_letter: true
  emails:
    max_length: 1000
    bindings:
      - {exchange: notify, arguments: {x-match: all, channel: email}}
    dead_letter: {via: policy}
  audit:
    bindings: [{exchange: audit}]
"""


def get(path: str) -> list[dict]:
    response = api("GET", path)
    response.raise_for_status()
    return response.json()


def q(vhost: str) -> str:
    return quote(vhost, safe="")


def test_fresh_vhost_plan_apply_replan_reapply(tmp_path: Path, vhost_name: str, monkeypatch) -> None:
    file = write(tmp_path, TOPOLOGY)
    planned = run("plan", "--json", file, vhost=vhost_name)
    assert planned.exit_code == 0, planned.output
    document = json.loads(planned.output)
    created = {(c["kind"], c["name"]) for c in document["changes"]}
    assert {c["action"] for c in document["changes"]} == {"create"}
    assert ("vhost", vhost_name) in created
    assert ("queue", "orders.dead") in created and ("policy", "provisioner.emails") in created
    assert document["summary"]["create"] == len(document["changes"]) == 18

    applied = run("apply", file, vhost=vhost_name)
    assert applied.exit_code == 0, applied.output
    # the plan and the apply count alike: the vhost itself is one of the 18 (made before the lock)
    assert "Plan: 18 to create" in applied.output and "Applied: 18 created" in applied.output

    queues = {item["name"]: item for item in get(f"queues/{q(vhost_name)}")}
    assert queues["orders"]["type"] == "quorum"
    assert queues["orders"]["arguments"] == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-dead-letter-exchange": "orders.dead",
        "x-dead-letter-routing-key": "order.created.dead",
    }
    assert queues["orders.dead"]["type"] == "quorum"
    assert queues["emails"]["arguments"] == {"x-max-length": 1000, "x-queue-type": "classic"}
    assert queues["audit"]["durable"] is True and queues["audit"]["auto_delete"] is False
    exchanges = {item["name"]: item for item in get(f"exchanges/{q(vhost_name)}")}
    assert exchanges["audit"]["internal"] is True and exchanges["audit"]["type"] == "fanout"
    assert exchanges["orders.dead"]["type"] == "direct" and exchanges["emails.dead"]["type"] == "direct"
    bindings = {
        (b["source"], b["destination_type"], b["destination"], b["routing_key"], json.dumps(b["arguments"]))
        for b in get(f"bindings/{q(vhost_name)}")
        if b["source"]
    }
    assert bindings == {
        ("orders", "exchange", "audit", "#", "{}"),
        ("orders", "queue", "orders", "order.created", "{}"),
        ("orders.dead", "queue", "orders.dead", "order.created.dead", "{}"),
        ("notify", "queue", "emails", "", json.dumps({"channel": "email", "x-match": "all"})),
        ("emails.dead", "queue", "emails.dead", "emails.dead", "{}"),
        ("audit", "queue", "audit", "", "{}"),
    }
    policy = api("GET", f"policies/{q(vhost_name)}/provisioner.emails").json()
    assert policy["definition"] == {"dead-letter-exchange": "emails.dead", "dead-letter-routing-key": "emails.dead"}

    again = run("plan", "--detailed-exitcode", file, vhost=vhost_name)
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output

    monkeypatch.setenv("TEST_VHOST", vhost_name)
    management = Management(endpoints())
    report = converge(load([file]), endpoints(), management, ApplyOptions())
    assert report.plan.is_empty
    assert management.writes_made == 0
    # the broker's version, then the vhost kind by kind or (4.3) its definitions, which leave out the internal
    # exchange audit (one more request), and its operator policies: nothing per object
    internal = rabbit.definitions_leave_out_internal_exchanges()
    assert management.requests_made == read_requests(1, rabbit.version_text()) + internal
    assert report.amqp_operations == 0
    assert "No changes" in run("apply", file, vhost=vhost_name).output


def test_a_binding_deleted_by_hand_is_drift_and_apply_repairs_it(tmp_path: Path, vhost_name: str) -> None:
    file = write(tmp_path, TOPOLOGY)
    assert run("apply", file, vhost=vhost_name).exit_code == 0
    connection = pika.BlockingConnection(parameters(vhost_name))
    connection.channel().queue_unbind("orders", "orders", "order.created")
    connection.close()

    drifted = run("plan", "--detailed-exitcode", "--json", file, vhost=vhost_name)
    assert drifted.exit_code == 2
    changes = json.loads(drifted.output)["changes"]
    assert [(c["action"], c["kind"], c["name"]) for c in changes] == [
        ("create", "binding", "orders -> queue:orders [order.created]")
    ]
    assert changes[0]["after"]["routing_key"] == "order.created"
    assert changes[0]["reason"] == "missing on the broker"
    ci = run("drift", file, vhost=vhost_name)
    assert ci.exit_code == 2
    assert (
        f"drift: create binding 'orders -> queue:orders [order.created]' in '{vhost_name}': missing on the broker"
        in ci.output
    )

    assert run("apply", file, vhost=vhost_name).exit_code == 0
    assert run("plan", "--detailed-exitcode", file, vhost=vhost_name).exit_code == 0
    assert run("drift", file, vhost=vhost_name).exit_code == 0


def test_a_vhost_set_up_by_the_seed_code_plans_as_no_changes(tmp_path: Path, vhost_name: str) -> None:
    """celery_dlq.py's setup_default_dlq and consume_from(queue='example', setup_dlq=True), declared by kombu."""
    api("PUT", f"vhosts/{q(vhost_name)}").raise_for_status()
    api("PUT", f"permissions/{q(vhost_name)}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})
    with Connection(amqp_url(vhost_name)) as connection:
        channel = connection.channel()
        for name, exchange, key in (("celery", "celery", "celery"), ("example", "example", "com.example")):
            kind = "direct" if name == "celery" else "topic"
            dead = f"{name}.dead"
            KombuQueue(
                name,
                KombuExchange(exchange, type=kind),
                routing_key=key,
                queue_arguments={"x-dead-letter-exchange": dead, "x-dead-letter-routing-key": f"{key}.dead"},
            )(channel).declare()
            KombuQueue(dead, KombuExchange(dead, type="direct"), routing_key=f"{key}.dead")(channel).declare()
    seed = (REPO / "topologies" / "seed.yaml").read_text().replace("vhost: /", "vhost: ${TEST_VHOST}")
    result = run("plan", "--detailed-exitcode", write(tmp_path, seed), vhost=vhost_name)
    assert result.exit_code == 0, result.output
    assert "No changes" in result.output


def test_unmanaged_objects_are_listed_and_pruned_only_when_asked(tmp_path: Path, vhost_name: str) -> None:
    file = write(tmp_path, TOPOLOGY)
    assert run("apply", file, vhost=vhost_name).exit_code == 0
    connection = pika.BlockingConnection(parameters(vhost_name))
    channel = connection.channel()
    channel.queue_declare("legacy", durable=True)
    channel.queue_declare("legacy.full", durable=True)
    channel.basic_publish("", "legacy.full", b"keep me")
    channel.queue_declare("legacy.quorum", durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    channel.basic_publish("", "legacy.quorum", b"keep me too")  # if-empty does not guard quorum queues
    # Celery's own: never drift (durable where transient queues are denied, as Celery's event_queue_durable makes it)
    channel.queue_declare("celeryev.1234", durable=DENY_DEPRECATED, auto_delete=True)
    channel.exchange_declare("celery.pidbox", "fanout", auto_delete=True)
    connection.close()
    consumer = pika.BlockingConnection(parameters(vhost_name))
    consumer.channel().queue_declare("legacy.busy", durable=True)
    consumer.channel().basic_consume("legacy.busy", lambda *_: None)  # an empty queue with a running consumer

    try:
        listed = json.loads(run("plan", "--json", file, vhost=vhost_name).output)
        assert listed["changes"] == []
        assert sorted(u["name"] for u in listed["unmanaged"]) == [
            "legacy",
            "legacy.busy",
            "legacy.full",
            "legacy.quorum",
        ]

        refused = run("apply", "--prune", file, vhost=vhost_name)
        assert refused.exit_code == 1
        for name in ("legacy.full", "legacy.quorum", "legacy.busy"):
            assert f"delete queue {name!r}" in refused.output
        assert "delete queue 'legacy' " not in refused.output and "nothing was changed" in refused.output
        names = {item["name"] for item in get(f"queues/{q(vhost_name)}")}
        assert names >= {"legacy", "legacy.full", "legacy.quorum", "legacy.busy"}
    finally:
        consumer.close()

    pruned = run("apply", "--prune", "--force", file, vhost=vhost_name)
    assert pruned.exit_code == 0, pruned.output
    names = {item["name"] for item in get(f"queues/{q(vhost_name)}")}
    assert not names & {"legacy", "legacy.full", "legacy.quorum", "legacy.busy"} and "celeryev.1234" in names


def test_an_immutable_change_is_refused_before_anything_is_touched(tmp_path: Path, vhost_name: str) -> None:
    file = write(tmp_path, TOPOLOGY)
    assert run("apply", file, vhost=vhost_name).exit_code == 0
    changed = TOPOLOGY.replace("max_length: 1000", "max_length: 5000").replace(
        "audit: {type: fanout, internal: true", "audit: {type: fanout, internal: true, durable: true"
    )
    changed = changed + "  brand.new: {}\n"
    file = write(tmp_path, changed)
    planned = json.loads(run("plan", "--json", file, vhost=vhost_name).output)
    replace = [c for c in planned["changes"] if c["action"] == "replace"]
    assert [(c["kind"], c["name"], c["reason"]) for c in replace] == [("queue", "emails", "x-max-length: 1000 -> 5000")]
    assert replace[0]["messages"] == 0
    assert replace[0]["fields"] == [  # structured: tools read these, never the reason text
        {
            "field": "x-max-length",
            "within": "arguments",
            "before": 1000,
            "after": 5000,
            "forces_replacement": True,
            "why": "a queue's properties and arguments cannot change on the broker",
        }
    ]
    refused = run("apply", file, vhost=vhost_name)
    assert refused.exit_code == 1
    assert "replace queue 'emails'" in refused.output and "--migrate" in refused.output
    assert "hint: under the queue's `policy: {max-length: 5000}`" in refused.output  # the way to avoid the next one
    assert "brand.new" not in {item["name"] for item in get(f"queues/{q(vhost_name)}")}


def test_broker_refusal_mid_apply_names_the_object_and_what_was_done(
    tmp_path: Path, vhost_name: str, monkeypatch
) -> None:
    """A queue declared by someone else between plan and apply: the broker's words, no traceback."""
    file = write(tmp_path, TOPOLOGY)
    monkeypatch.setenv("TEST_VHOST", vhost_name)
    desired = load([file])
    management = Management(endpoints())
    plan = make_plan(desired, management)
    from provisioner.apply import ApplyFailed, Executor

    api("PUT", f"vhosts/{q(vhost_name)}").raise_for_status()
    api("PUT", f"permissions/{q(vhost_name)}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})
    connection = pika.BlockingConnection(parameters(vhost_name))
    connection.channel().queue_declare("audit", durable=True, arguments={"x-max-length": 1})
    connection.close()
    executor = Executor(desired, endpoints(), management, ApplyOptions(workers=1))
    with pytest.raises(ApplyFailed) as caught:
        executor.execute(plan)
    message = str(caught.value)
    assert "declare queue 'audit'" in message and "406 PRECONDITION_FAILED" in message
    assert "change(s) applied" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            ["--amqp-url", "amqp://guest:s3cret@127.0.0.1:1/", "--management-url", "http://guest:s3cret@127.0.0.1:1"],
            "cannot reach the management API at 127.0.0.1:1",
        ),
        (
            ["--management-url", MANAGEMENT_URL.replace("://", "://guest:s3cret@", 1)],
            "refused the credentials of user 'guest' (401",
        ),
    ],
)
def test_broker_errors_are_one_line_without_the_password(
    tmp_path: Path, vhost_name: str, options: list[str], expected: str
) -> None:
    result = run("plan", "--retry-seconds", "0", *options, write(tmp_path, TOPOLOGY), vhost=vhost_name)
    assert result.exit_code == 1
    assert expected in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
