"""What to ignore on the broker: the include_object filter and `--ignore PATTERN`, against the real broker."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pika
import pika.exceptions
import pytest
from provision_cli import run
from rabbit import endpoints, exists, parameters

from provisioner.broker.management import Management
from provisioner.live_state import ignoring, include_object
from provisioner.planning import make_plan
from provisioner.topology import load

TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  work: {type: direct}
queues:
  legacy.managed:
    bindings: [{exchange: work, routing_key: managed}]
"""


def messages_in(vhost: str, queue: str) -> int:
    """Exact, over AMQP: a passive declare."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


@pytest.fixture
def applied(tmp_path: Path, vhost_name: str) -> str:
    """The topology applied, plus unmanaged objects: two matching ``legacy.*`` (one holding 3 messages), one not."""
    file = tmp_path / "topology.yaml"
    file.write_text(textwrap.dedent(TOPOLOGY))
    assert run("apply", str(file), vhost=vhost_name).exit_code == 0
    connection = pika.BlockingConnection(parameters(vhost_name))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("legacy.keep", durable=True)
    for number in range(3):
        channel.basic_publish("", "legacy.keep", f"{number}".encode(), pika.BasicProperties(delivery_mode=2))
    channel.exchange_declare("legacy.exchange", "fanout", durable=True)
    channel.queue_declare("stray", durable=True)
    connection.close()
    return str(file)


def test_ignored_unmanaged_objects_are_never_listed_nor_pruned(applied: str, vhost_name: str) -> None:
    seen = json.loads(run("plan", "--json", applied, vhost=vhost_name).output)
    assert sorted(u["name"] for u in seen["unmanaged"]) == ["legacy.exchange", "legacy.keep", "stray"]

    ignored = json.loads(run("plan", "--json", "--ignore", "legacy.*", applied, vhost=vhost_name).output)
    assert ignored["changes"] == []  # the managed legacy.managed matches the pattern and stays managed
    assert [u["name"] for u in ignored["unmanaged"]] == ["stray"]

    pruned = run("apply", "--prune", "--ignore", "legacy.*", applied, vhost=vhost_name)
    assert pruned.exit_code == 0, pruned.output
    assert messages_in(vhost_name, "legacy.keep") == 3
    assert exists(vhost_name, "exchange", "legacy.exchange")
    assert not exists(vhost_name, "queue", "stray")  # what the filter lets through is pruned as before
    assert messages_in(vhost_name, "legacy.managed") == 0  # still there, untouched


def test_a_library_user_replaces_the_filter(applied: str, vhost_name: str, monkeypatch) -> None:
    monkeypatch.setenv("TEST_VHOST", vhost_name)
    desired = load([applied])

    def not_stray(kind: str, name: str, wanted: bool) -> bool:
        return include_object(kind, name, wanted) and name != "stray"

    plan = make_plan(desired, Management(endpoints()), include=not_stray)
    assert sorted(u.resource.name for u in plan.unmanaged) == ["legacy.exchange", "legacy.keep"]
    combined = make_plan(desired, Management(endpoints()), include=ignoring(["legacy.*"], base=not_stray))
    assert combined.unmanaged == () and combined.is_empty
