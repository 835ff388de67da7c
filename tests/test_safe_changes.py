"""Issue 5's promise end to end through the CLI: a replace is planned with its message count,
refused without --migrate, and done with --migrate without losing a message."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from click.testing import CliRunner, Result
from rabbit import api, parameters

from provisioner.cli import main

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


def run(*args: str, vhost: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"TEST_VHOST": vhost}, catch_exceptions=False)


def write(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


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
    assert f"{2 * MESSAGES} message(s) migrated" in migrated.output  # out to the temporary queue and back
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
