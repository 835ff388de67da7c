"""Issue 5's promise end to end through the CLI: a replace is planned with its message count,
refused without --migrate, and done with --migrate without losing a message."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from provision_cli import run, write
from rabbit import api, parameters

from provisioner.topology import load

REPO = Path(__file__).resolve().parent.parent.parent

BEFORE = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  work: {type: topic}
queues:
  jobs:
    max_length: 5000
    bindings:
      - {exchange: work, routing_key: jobs.a}
      - {exchange: work, routing_key: jobs.b}
    dead_letter: true
"""
MESSAGES = 300


def bodies(vhost: str, queue: str) -> list[bytes]:
    """Read every message of a queue (and leave them there: nack with requeue at the end)."""
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    found = []
    while True:
        method, _, body = channel.basic_get(queue)
        if method is None:
            break
        found.append(body)
    connection.close()  # unacked messages go back to the queue
    return found


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (("max_length: 5000", "type: quorum"), lambda q: q["type"] == "quorum"),
        (("max_length: 5000", "max_length: 8000"), lambda q: q["arguments"]["x-max-length"] == 8000),
    ],
    ids=["classic-to-quorum", "x-max-length"],
)
def test_replace_is_refused_then_migrated_without_losing_a_message(
    tmp_path: Path, vhost_name: str, change: tuple[str, str], check
) -> None:
    before = write(tmp_path, BEFORE, "before.yaml")
    assert run("apply", before, vhost=vhost_name).exit_code == 0
    connection = pika.BlockingConnection(parameters(vhost_name))
    channel = connection.channel()
    channel.confirm_delivery()
    sent = [f"message {i}".encode() for i in range(MESSAGES)]
    for body in sent:
        channel.basic_publish("work", "jobs.a", body, pika.BasicProperties(delivery_mode=2))
    connection.close()

    after = write(tmp_path, BEFORE.replace(*change), "after.yaml")
    planned = json.loads(run("plan", "--json", after, vhost=vhost_name).output)
    replaced = {
        c["name"]: c["messages"] for c in planned["changes"] if (c["action"], c["kind"]) == ("replace", "queue")
    }
    assert replaced["jobs"] == MESSAGES
    assert len(replaced) == len(planned["changes"])  # a quorum queue's dead-letter queue turns quorum too

    refused = run("apply", after, vhost=vhost_name)
    assert refused.exit_code == 1
    assert "replace queue 'jobs'" in refused.output and f"({MESSAGES} messages)" in refused.output
    live = api("GET", f"queues/{quote(vhost_name, safe='')}/jobs").json()
    assert live["type"] == "classic" and live["arguments"]["x-max-length"] == 5000

    migrated = run("apply", "--migrate", after, vhost=vhost_name)
    assert migrated.exit_code == 0, migrated.output
    assert f"{MESSAGES} message(s) migrated" in migrated.output  # messages, not moves (each moves twice)
    live = api("GET", f"queues/{quote(vhost_name, safe='')}/jobs").json()
    assert check(live)
    assert sorted(bodies(vhost_name, "jobs")) == sorted(sent)
    bound = {
        b["routing_key"]
        for b in api("GET", f"queues/{quote(vhost_name, safe='')}/jobs/bindings").json()
        if b["source"] == "work"
    }
    assert bound == {"jobs.a", "jobs.b"}
    assert run("plan", "--detailed-exitcode", after, vhost=vhost_name).exit_code == 0


def count(vhost: str, name: str) -> int | None:
    """The queue's exact message count by passive declare over AMQP; None when it does not exist."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        return int(connection.channel().queue_declare(name, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return None
    finally:
        if connection.is_open:
            connection.close()


def test_a_parked_migration_of_a_queue_not_in_the_topology_is_finished(tmp_path: Path, vhost_name: str) -> None:
    before = write(tmp_path, BEFORE, "before.yaml")
    assert run("apply", before, vhost=vhost_name).exit_code == 0
    connection = pika.BlockingConnection(parameters(vhost_name))
    channel = connection.channel()
    channel.queue_declare("legacy", durable=True, arguments={"x-queue-type": "classic"})
    channel.queue_declare("legacy.provisioner-migrate", durable=True, arguments={"x-queue-type": "classic"})
    channel.queue_bind("legacy.provisioner-migrate", "work", "legacy.key")
    channel.confirm_delivery()
    for n in range(7):
        channel.basic_publish("work", "legacy.key", b"%d" % n, pika.BasicProperties(delivery_mode=2))
    connection.close()

    planned = run("plan", before, vhost=vhost_name)
    assert "-/+ queue legacy  (unfinished migration)" in planned.output
    assert "[in legacy.provisioner-migrate: 7 messages, 1 bindings; apply --migrate finishes it]" in planned.output
    assert "Not in the topology" not in planned.output  # a migration to finish, never listed as left alone
    assert run("plan", "--detailed-exitcode", "--prune", before, vhost=vhost_name).exit_code == 2
    refused = run("apply", "--prune", "--force", before, vhost=vhost_name)
    assert refused.exit_code == 1 and "7 message(s) and 1 binding(s) wait in 'legacy.provisioner-migrate'" in (
        refused.output
    )
    assert count(vhost_name, "legacy.provisioner-migrate") == 7  # --prune --force did not touch it

    finished = run("apply", "--migrate", before, vhost=vhost_name)
    assert finished.exit_code == 0, finished.output
    assert "7 message(s) migrated" in finished.output
    assert count(vhost_name, "legacy") == 7 and count(vhost_name, "legacy.provisioner-migrate") is None
    bound = api("GET", f"queues/{quote(vhost_name, safe='')}/legacy/bindings").json()
    assert {(b["source"], b["routing_key"]) for b in bound if b["source"]} == {("work", "legacy.key")}
    assert run("plan", "--detailed-exitcode", before, vhost=vhost_name).exit_code == 0  # legacy: only unmanaged


def quorum_default_vhost(name: str) -> None:
    """A vhost whose default queue type is quorum (3.10 reads `defaultqueuetype`, 3.11+ `default_queue_type`)."""
    body = {"defaultqueuetype": "quorum", "default_queue_type": "quorum"}
    api("PUT", f"vhosts/{quote(name, safe='')}", json=body).raise_for_status()
    permissions = {"configure": ".*", "write": ".*", "read": ".*"}
    api("PUT", f"permissions/{quote(name, safe='')}/guest", json=permissions).raise_for_status()
    connection = pika.BlockingConnection(parameters(name))
    connection.channel().queue_declare("probe.default", durable=True)  # no x-queue-type, as old applies declared
    connection.channel().queue_delete("probe.default")
    connection.close()


def seed_in(tmp_path: Path) -> str:
    seed = (REPO / "topologies" / "seed.yaml").read_text().replace("vhost: /", "vhost: ${TEST_VHOST}")
    return write(tmp_path, seed, "seed.yaml")


SEED_QUEUES = {"celery", "celery.dead", "example", "example.dead"}


def queue_types(vhost: str) -> dict[str, str]:
    return {q["name"]: q["type"] for q in api("GET", f"queues/{quote(vhost, safe='')}").json()}


def test_a_vhost_whose_default_queue_type_is_quorum_keeps_classic_queues_classic(
    tmp_path: Path, vhost_name: str
) -> None:
    quorum_default_vhost(vhost_name)
    connection = pika.BlockingConnection(parameters(vhost_name))
    connection.channel().queue_declare("untyped", durable=True)
    connection.close()
    assert queue_types(vhost_name) == {"untyped": "quorum"}  # the broker really applies the vhost's default

    seed = seed_in(tmp_path)
    applied = run("apply", seed, vhost=vhost_name)
    assert applied.exit_code == 0, applied.output
    types = queue_types(vhost_name)
    assert {name: types[name] for name in SEED_QUEUES} == dict.fromkeys(SEED_QUEUES, "classic")
    assert run("plan", "--detailed-exitcode", seed, vhost=vhost_name).exit_code == 0


def test_classic_queues_made_quorum_by_the_vhost_default_are_migrated_back(tmp_path: Path, vhost_name: str) -> None:
    """What applies before explicit types left behind: seed.yaml's classic queues as quorum, holding messages."""
    quorum_default_vhost(vhost_name)
    seed = seed_in(tmp_path)
    topology = load([seed], environ={"TEST_VHOST": vhost_name})
    connection = pika.BlockingConnection(parameters(vhost_name))
    channel = connection.channel()
    channel.confirm_delivery()
    for queue in topology.queues:
        channel.queue_declare(queue.name, durable=True, arguments=queue.arguments)  # no x-queue-type
    held = {"celery": 10, "celery.dead": 5, "example": 10, "example.dead": 0}
    for name, messages in held.items():
        for n in range(messages):
            channel.basic_publish("", name, b"%d" % n, pika.BasicProperties(delivery_mode=2))
    connection.close()
    assert {name: queue_types(vhost_name)[name] for name in SEED_QUEUES} == dict.fromkeys(SEED_QUEUES, "quorum")

    migrated = run("apply", "--migrate", seed, vhost=vhost_name)
    assert migrated.exit_code == 0, migrated.output
    assert "4 replaced" in migrated.output and "25 message(s) migrated" in migrated.output
    assert {name: queue_types(vhost_name)[name] for name in SEED_QUEUES} == dict.fromkeys(SEED_QUEUES, "classic")
    assert {name: count(vhost_name, name) for name in held} == held
    assert {count(vhost_name, f"{name}.provisioner-migrate") for name in held} == {None}
    assert run("plan", "--detailed-exitcode", seed, vhost=vhost_name).exit_code == 0
