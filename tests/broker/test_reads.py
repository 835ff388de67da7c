"""A vhost read kind by kind (broker/reads.py) gives a plan what its definitions give (issue 29)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
import rabbit
from click.testing import CliRunner
from rabbit import api, endpoints, parameters

from provisioner.broker.management import Management
from provisioner.broker.reads import BY_KIND, DEFINITIONS, exports_cheaply, read_requests, read_vhosts
from provisioner.cli import main
from provisioner.live_state import live_from_definitions

pytestmark = pytest.mark.broker


def _odd_vhost(vhost: str, channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    """Every field the comparison reads, and what definitions leave out (amq.*, exclusive queues, default bindings)."""
    channel.exchange_declare("x.topic", "topic", durable=True)
    channel.exchange_declare("x.int", "fanout", durable=True, internal=True)
    channel.exchange_declare("x.hdr", "headers", durable=True, arguments={"alternate-exchange": "x.topic"})
    channel.exchange_declare("x.ad", "direct", durable=True, auto_delete=True)
    channel.exchange_bind("x.int", "x.topic", "a.#", arguments={"k": "v"})
    channel.queue_declare("q.dur", durable=True, arguments={"x-max-length": 10, "x-dead-letter-exchange": "x.ad"})
    channel.queue_declare("q.quorum", durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind("q.dur", "x.topic", "k.1")
    channel.queue_bind("q.dur", "x.hdr", "", arguments={"x-match": "all", "a": 1})
    channel.queue_bind("q.dur", "amq.direct", "k.3")
    channel.queue_bind("q.quorum", "x.int", "")
    policy = {"pattern": "^q\\.dur$", "definition": {"max-length": 5}, "priority": 3, "apply-to": "queues"}
    api("PUT", f"policies/{quote(vhost, safe='')}/p1", json=policy)


def test_the_lists_give_the_live_state_the_definitions_give(vhost_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION_LIVE_READ", BY_KIND)  # the lists, also where definitions are cheaper (4.3)
    api("PUT", f"vhosts/{quote(vhost_name, safe='')}", json={})
    api("PUT", f"permissions/{quote(vhost_name, safe='')}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})
    connection = pika.BlockingConnection(parameters(vhost_name))
    try:
        channel = connection.channel()
        channel.queue_declare("q.excl", exclusive=True)
        channel.queue_bind("q.excl", "amq.topic", "k.2")
        _odd_vhost(vhost_name, channel)
        channel.queue_bind("q.excl", "x.topic", "k.2")  # 4.3's definitions hold this binding, 3.10's do not
        management = Management(endpoints())
        read = read_vhosts(management, [vhost_name])[vhost_name]
        assert (read.how, management.requests_made) == (BY_KIND, read_requests(1, rabbit.version_text()))
        definitions = Management(endpoints()).definitions(vhost_name)
    finally:
        connection.close()
    assert definitions is not None and read.definitions is not None
    assert read.definitions["rabbit_version"] == definitions["rabbit_version"]
    by_kind = live_from_definitions(vhost_name, read.definitions).topology
    exported = live_from_definitions(vhost_name, definitions).topology
    for kind in ("exchanges", "queues", "policies"):
        assert sorted(map(repr, getattr(by_kind, kind))) == sorted(map(repr, getattr(exported, kind))), kind
    to_exclusive = {b for b in exported.bindings if b.destination == "q.excl"}
    assert sorted(map(repr, by_kind.bindings)) == sorted(map(repr, set(exported.bindings) - to_exclusive))
    assert {(b.source, b.destination) for b in by_kind.bindings} >= {("x.topic", "x.int"), ("x.hdr", "q.dur")}
    assert {q.name for q in by_kind.queues} == {"q.dur", "q.quorum"}  # never the exclusive one
    assert read_vhosts(Management(endpoints()), ["no-" + vhost_name])["no-" + vhost_name].definitions is None


def test_plan_json_says_how_it_read(tmp_path: Path, vhost_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "t.yaml"
    file.write_text(f"version: 1\nvhost: {vhost_name}\nexchanges:\n  work: {{type: topic}}\nqueues:\n  q: {{}}\n")
    assert CliRunner().invoke(main, ["apply", "--yes", str(file)]).exit_code == 0
    cheaper = DEFINITIONS if exports_cheaply(rabbit.version_text()) else BY_KIND  # 4.3 exports cheaply
    for chosen, how in (("", cheaper), (BY_KIND, BY_KIND), (DEFINITIONS, DEFINITIONS)):
        monkeypatch.setenv("PROVISION_LIVE_READ", chosen)
        result = CliRunner().invoke(main, ["plan", "--json", "--detailed-exitcode", str(file)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["live_read"] == {vhost_name: how}
