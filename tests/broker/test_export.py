"""`provision export`: idiomatic output, what it leaves out, and the round trip against the real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pytest
import rabbit
import yaml
from celery_worker import counts
from click.testing import Result
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kombu import Connection
from kombu import Exchange as KombuExchange
from kombu import Queue as KombuQueue
from provision_cli import run
from rabbit import DENY_DEPRECATED, MANAGEMENT_URL, amqp_url, api, endpoints, wait_for

from provisioner.broker.management import Management
from provisioner.errors import TopologyInvalid
from provisioner.export.emit import scalar
from provisioner.export.run import export_topology
from provisioner.export.source import from_broker
from provisioner.topology import load

FIXTURES = Path(__file__).parent.parent / "fixtures" / "export"
DEFINITIONS = FIXTURES / "definitions.json"


def export_to(path: Path, *args: str) -> Result:
    result = run("export", *args, "-o", str(path))
    assert result.exit_code == 0, result.output
    return result


def problem_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("problem:")]


def clean_plan(path: Path, unmanaged: tuple[str, ...] = ()) -> None:
    """validate exits 0, plan --detailed-exitcode exits 0, and nothing is left unmanaged but ``unmanaged``."""
    validated = run("validate", str(path))
    assert validated.exit_code == 0, validated.output + path.read_text()
    planned = run("plan", "--detailed-exitcode", str(path))
    assert planned.exit_code == 0, planned.output + path.read_text()
    listed = json.loads(run("plan", "--json", str(path)).stdout)
    assert sorted(u["name"] for u in listed["unmanaged"]) == sorted(unmanaged), planned.output


def make_vhost(name: str) -> None:
    api("PUT", f"vhosts/{quote(name, safe='')}").raise_for_status()
    api("PUT", f"permissions/{quote(name, safe='')}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})


def definitions_of(vhost: str) -> dict[str, list[str]]:
    """GET /api/definitions/{vhost}, each object without its vhost, as sorted JSON texts."""
    found = api("GET", f"definitions/{quote(vhost, safe='')}").json()
    return {
        kind: sorted(
            json.dumps({k: v for k, v in item.items() if k != "vhost"}, sort_keys=True) for item in found[kind]
        )
        for kind in ("exchanges", "queues", "bindings", "policies")
    }


def with_vhost(text: str, vhost: str) -> str:
    return re.sub(r"(?m)^vhost: .*$", f"vhost: {scalar(vhost)}", text, count=1)


# A definitions file in RabbitMQ's own format: the idiomatic forms, and what is left out.


def test_a_definitions_file_becomes_an_idiomatic_topology(tmp_path: Path) -> None:
    result = export_to(tmp_path / "legacy.yaml", "--definitions", str(DEFINITIONS), "--vhost", "legacy")
    text = (tmp_path / "legacy.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    document = yaml.safe_load(text)
    assert document["vhost"] == "legacy"
    assert list(document) == ["version", "vhost", "exchanges", "queues", "policies", "limits", "federation_upstreams"]
    assert document["limits"] == {"max-queues": 100}  # vhost limits are part of the format
    # a URI with a password is a placeholder, the comment says which URI (masked)
    assert document["federation_upstreams"] == {"origin": {"uri": "${FEDERATION_UPSTREAM_ORIGIN_URI}"}}
    assert "set FEDERATION_UPSTREAM_ORIGIN_URI to amqp://fed:***@upstream.example.com" in text
    assert document["exchanges"] == {
        "celery": {"type": "direct"},
        "events": {"type": "fanout"},
        "orders": {"type": "topic"},
    }
    queues = document["queues"]
    assert queues["orders"] == {
        "type": "quorum",
        "delivery_limit": 5,
        "bindings": [
            {"exchange": "orders", "routing_key": "order.created"},
            {"exchange": "orders", "routing_key": "order.paid"},
        ],
        "dead_letter": True,
    }
    assert queues["mail"] == {"dead_letter": {"via": "policy"}, "policy": {"max-length": 100}}
    assert queues["celery"] == {"bindings": [{"exchange": "celery", "routing_key": "celery"}]}  # no injected type
    assert queues["reports"] == {"max_length": 1000, "message_ttl": 60000, "queue_mode": "lazy"}
    assert queues["audit"]["arguments"] == {"x-note": "kept as $$written"}  # $$: read back as a literal $
    assert document["policies"] == {
        "reports-ttl": {"pattern": "^reports", "priority": 1, "definition": {"expires": 3600000}}
    }
    assert set(queues) == {"audit", "celery", "mail", "orders", "reports"}  # no DLQs, Celery's own, migrations
    body = text.split("version: 1", 1)[1]
    for absent in ("celery_delayed", "pidbox", "celeryev", "#.order", "provisioner-migrate", "x-queue-type"):
        assert absent not in body
    assert "elsewhere" not in text  # another vhost's queue, user and permissions
    header = text.split("version: 1")[0]
    for listed in ("user 'admin'", "permissions of user 'admin'"):
        assert listed in header
        assert listed in result.stderr
    assert "export --accounts writes them" in result.stderr and "not expressible" not in text + result.stderr
    assert "SECRET" not in text + result.output
    placeholder = {"FEDERATION_UPSTREAM_ORIGIN_URI": "amqp://fed:set-by-the-user@upstream.example.com"}
    loaded = load([tmp_path / "legacy.yaml"], environ=placeholder)
    assert loaded.queue("legacy", "orders.dead") is not None  # dead_letter makes it


@pytest.mark.broker
def test_exported_definitions_file_plans_clean_against_the_broker_it_was_imported_into(tmp_path: Path) -> None:
    """RabbitMQ imports its file into a fresh vhost; our export of the same file then plans as no changes."""
    data = json.loads(DEFINITIONS.read_text())
    vhost = f"test-export-{uuid.uuid4().hex[:10]}"
    make_vhost(vhost)
    try:
        body = {
            kind: [
                {k: v for k, v in item.items() if k != "vhost"}
                for item in data[kind]
                if item["vhost"] == "legacy"
                and "provisioner-migrate" not in json.dumps(item)
                and "federation" not in str(item.get("component"))
            ]
            for kind in ("exchanges", "queues", "bindings", "policies", "parameters")
        }  # a migration in progress is a change plan shows until apply --migrate finishes it; vhost limits too
        api("POST", f"definitions/{quote(vhost, safe='')}", json=body).raise_for_status()
        # the shared broker has no federation plugin (tests/broker/test_parameters.py exports federation upstreams)
        without_federation = {
            **data,
            "parameters": [p for p in data["parameters"] if "federation" not in p["component"]],
        }
        definitions = tmp_path / "definitions.json"
        definitions.write_text(json.dumps(without_federation))
        export_to(tmp_path / "file.yaml", "--definitions", str(definitions), "--vhost", "legacy")
        exported = tmp_path / "exported.yaml"
        exported.write_text(with_vhost((tmp_path / "file.yaml").read_text(), vhost))
        clean_plan(exported)
        live = tmp_path / "live.yaml"
        export_to(live, "--vhost", vhost)
        body_of = lambda path: path.read_text().split("version: 1", 1)[1]  # noqa: E731 - the header names the source
        assert body_of(live) == body_of(exported)
    finally:
        api("DELETE", f"vhosts/{quote(vhost, safe='')}")


def test_states_validate_refuses_are_exported_with_a_problem_at_the_object(tmp_path: Path) -> None:
    """A dead-letter cycle and a dead-letter exchange that exists nowhere: written, marked, one stderr line each."""
    objects = {
        "exchanges": [{"name": "loop", "type": "direct", "durable": True, "auto_delete": False, "internal": False}],
        "queues": [
            {
                "name": "a",
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-dead-letter-exchange": "loop", "x-dead-letter-routing-key": "b"},
            },
            {
                "name": "b",
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-dead-letter-exchange": "loop", "x-dead-letter-routing-key": "a"},
            },
            {"name": "lost", "durable": True, "auto_delete": False, "arguments": {"x-dead-letter-exchange": "nowhere"}},
        ],
        "bindings": [
            {"source": "loop", "destination": "a", "destination_type": "queue", "routing_key": "a", "arguments": {}},
            {"source": "loop", "destination": "b", "destination_type": "queue", "routing_key": "b", "arguments": {}},
        ],
        "policies": [],
    }
    source = tmp_path / "broken.json"
    source.write_text(json.dumps(objects))
    out = tmp_path / "broken.yaml"
    result = export_to(out, "--definitions", str(source), "--vhost", "broken")
    problems = problem_lines(result)
    assert len(problems) == 2, result.stderr
    assert any("dead-letter cycle" in line for line in problems)
    assert any("'nowhere'" in line and "exists nowhere" in line for line in problems)
    text = out.read_text()
    assert re.search(r"# PROBLEM: dead-letter cycle: .*\n  a:", text), text
    assert re.search(r"# PROBLEM: dead-letter exchange 'nowhere'.*\n  lost:", text), text
    with pytest.raises(TopologyInvalid):
        load([out])


# The live broker: read only, idiomatic, round trip.

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
    dead_letter: {via: policy, suffix: dlq}
  audit:
    bindings: [{exchange: audit}]
"""


def test_export_is_read_only_two_requests_per_vhost(tmp_path: Path, vhost_name: str) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(textwrap.dedent(TOPOLOGY))
    assert run("apply", str(topology), env={"TEST_VHOST": vhost_name}).exit_code == 0
    before = definitions_of(vhost_name)
    management = Management(endpoints())
    exported = export_topology(from_broker(management, [vhost_name]), output=str(tmp_path / "out.yaml"))
    # Two requests for the vhost (its definitions whatever their number, its operator policies),
    # five for vhosts, the version, users and permissions; on 4.3 one more for the internal exchange its
    # definitions omit, and from 4.1 one for the queues the broker protects (definitions do not say which).
    requests = 7 + rabbit.definitions_leave_out_internal_exchanges() + rabbit.protects_plugin_queues()
    assert (management.requests_made, management.writes_made) == (requests, 0)
    assert definitions_of(vhost_name) == before
    result = export_to(tmp_path / "out.yaml", "--vhost", vhost_name)
    assert f"({requests} management request(s), 0 write(s))" in result.stderr
    assert (tmp_path / "out.yaml").read_text() == exported.text
    document = yaml.safe_load(exported.text)
    assert document["queues"]["emails"]["dead_letter"] == {"suffix": "dlq", "via": "policy"}
    assert document["queues"]["orders"]["dead_letter"] is True
    assert document["exchanges"]["audit"]["bindings"] == [{"exchange": "orders", "routing_key": "#"}]
    clean_plan(tmp_path / "out.yaml")


def test_the_seed_codes_broker_exports_as_the_seed_topology(tmp_path: Path, vhost_name: str) -> None:
    """celery_dlq.py's setup_default_dlq and consume_from(queue='example', setup_dlq=True), declared by kombu."""
    make_vhost(vhost_name)
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
    out = tmp_path / "seed.yaml"
    result = export_to(out, "--vhost", vhost_name)
    assert problem_lines(result) == []
    document = yaml.safe_load(out.read_text())
    seed = yaml.safe_load((Path(__file__).parent.parent.parent / "topologies" / "seed.yaml").read_text())
    assert document["exchanges"] == seed["exchanges"]
    assert document["queues"] == seed["queues"]  # dead_letter: true, the .dead pairs left to it
    clean_plan(out)


PLAIN_APP = """
from celery import Celery
from kombu import Exchange, Queue

app = Celery("plain")
app.conf.task_queues = [
    Queue("celery", Exchange("celery", type="direct"), routing_key="celery"),
    Queue(
        "reports",
        Exchange("reports", type="topic"),
        routing_key="reports.#",
        queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": 5},
    ),
    Queue(
        "thumbnails",
        Exchange("media", type="topic"),
        routing_key="thumbs.*",
        queue_arguments={"x-max-length": MAX_LENGTH, "x-message-ttl": 60000, "x-max-priority": 5},
    ),
]
app.conf.task_routes = {"reports.*": {"queue": "reports"}, "media.make_thumbnail": "thumbnails"ROUTE}


@app.task(name="media.make_thumbnail")
def make_thumbnail(path):
    return path
"""


def write_app(folder: Path, max_length: int = 1000, route: str = "") -> str:
    module = f"plain_app_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(PLAIN_APP.replace("MAX_LENGTH", str(max_length)).replace("ROUTE", route))
    return module


def test_a_vhost_a_plain_celery_worker_set_up_exports_with_its_tasks_and_plans_clean(
    tmp_path: Path, vhost_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default config, quorum and classic queues with x-arguments; a worker started once makes everything."""
    make_vhost(vhost_name)
    module = write_app(tmp_path)
    env = {**os.environ, "CELERY_BROKER_URL": amqp_url(vhost_name)}
    command = [sys.executable, "-m", "celery", "-A", module, "worker", "-P", "solo", "--without-gossip"]
    log = tmp_path / "worker.log"
    with open(log, "wb") as output:
        worker = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: all(consumed(vhost_name, q) for q in ("celery", "reports", "thumbnails")), timeout=90)
        wait_for(lambda: any(b["routing_key"] == "#.reports.#" for b in bindings(vhost_name)), timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert any(b["source"] == "celery_delayed_delivery" for b in bindings(vhost_name)), log.read_text()[-2000:]
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "topology.yaml"
    result = export_to(out, "--vhost", vhost_name, "--celery-app", f"{module}:app")
    assert problem_lines(result) == [], result.stderr
    text = out.read_text()
    document = yaml.safe_load(text)
    assert document["tasks"] == {"reports.*": {"queue": "reports"}, "media.make_thumbnail": {"queue": "thumbnails"}}
    assert document["celery"] == {"default_queue": "celery"}
    assert document["queues"]["reports"] == {
        "type": "quorum",
        "delivery_limit": 5,
        "bindings": [{"exchange": "reports", "routing_key": "reports.#"}],
    }
    assert document["queues"]["thumbnails"] == {
        "max_length": 1000,
        "message_ttl": 60000,
        "max_priority": 5,
        "bindings": [{"exchange": "media", "routing_key": "thumbs.*"}],
    }
    body = text.split("version: 1", 1)[1]  # the header names what was left out as Celery's own
    for absent in ("celery_delayed", "pidbox", "celeryev", "#.reports"):
        assert absent not in body
    assert "left out of vhost" in text and "as Celery's own (it declares them itself)" in text
    clean_plan(out)
    rendered = run("render", str(out), "-o", "-")
    assert rendered.exit_code == 0, rendered.output
    assert "'x-delivery-limit': 5" in rendered.output and "'reports.*'" in rendered.output


def consumed(vhost: str, queue: str) -> bool:
    """Whether the queue exists and has its consumer (counted over AMQP)."""
    try:
        return counts(vhost, queue)[1] == 1
    except pika.exceptions.ChannelClosedByBroker:
        return False  # not declared yet


def bindings(vhost: str) -> list[dict[str, Any]]:
    return list(api("GET", f"bindings/{quote(vhost, safe='')}").json())


def test_where_the_app_and_the_broker_disagree_is_one_problem_line_each(
    tmp_path: Path, vhost_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_vhost(vhost_name)
    module = write_app(tmp_path, max_length=2000, route=', "media.archive": "archive"')
    with Connection(amqp_url(vhost_name)) as connection:
        channel = connection.channel()
        for queue in write_app_queues(module, tmp_path, monkeypatch):
            queue(channel).declare()
    monkeypatch.chdir(tmp_path)
    result = export_to(tmp_path / "out.yaml", "--vhost", vhost_name, "--celery-app", f"{module}:app")
    problems = problem_lines(result)
    assert len(problems) == 1, result.stderr
    assert "queue 'thumbnails'" in problems[0] and "PRECONDITION_FAILED" in problems[0]
    # 'archive' is a route to a queue the publisher creates (task_create_missing_queues): exported as Celery makes it
    assert "queue 'archive' is not on the broker yet: Celery declares it" in result.stderr
    document = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert document["tasks"]["media.archive"] == {"queue": "archive"}
    assert document["queues"]["archive"] == {"bindings": [{"exchange": "archive", "routing_key": "archive"}]}


def write_app_queues(module: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[KombuQueue]:
    """The app's queues as the broker holds them: thumbnails with x-max-length 1000, not the app's 2000."""
    monkeypatch.syspath_prepend(str(folder))
    app = __import__(module).app
    queues = list(app.conf.task_queues)
    thumbnails = queues[2]
    queues[2] = KombuQueue(
        thumbnails.name,
        thumbnails.exchange,
        routing_key=thumbnails.routing_key,
        queue_arguments={**thumbnails.queue_arguments, "x-max-length": 1000},
    )
    return queues


# Errors: one line, exit 1.


@pytest.mark.broker
def test_export_refuses_to_overwrite_and_bad_input_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    out.write_text("mine\n")
    refused = run("export", "--definitions", str(DEFINITIONS), "--vhost", "legacy", "-o", str(out))
    assert refused.exit_code == 1 and "exists; pass --force" in refused.stderr
    assert out.read_text() == "mine\n"
    forced = run("export", "--definitions", str(DEFINITIONS), "--vhost", "legacy", "-o", str(out), "--force")
    assert forced.exit_code == 0 and out.read_text().startswith("# yaml-language-server")
    (tmp_path / "bad.json").write_text("{not json")
    for args, words in (
        (["--definitions", str(tmp_path / "bad.json")], "is not JSON"),
        (["--definitions", str(tmp_path / "missing.json")], "cannot read"),
        (["--definitions", str(DEFINITIONS), "--vhost", "absent"], "vhost 'absent' is not in"),
        (["--vhost", f"absent-{uuid.uuid4().hex[:8]}"], "is not in the broker"),
        (["--celery-app", "no_such_module_here:app"], "cannot import 'no_such_module_here'"),
    ):
        result = run("export", *args)
        assert result.exit_code == 1, result.output
        assert len(result.stderr.splitlines()) == 1 and words in result.stderr, result.stderr
        assert "Traceback" not in result.output and "internal error" not in result.output
    parts = urlsplit(MANAGEMENT_URL)
    wrong_url = parts._replace(netloc=f"guest:hunter2-secret@{parts.hostname}:{parts.port}").geturl()
    wrong = run("export", env={"PROVISION_MANAGEMENT_URL": wrong_url})
    assert wrong.exit_code == 1 and len(wrong.stderr.splitlines()) == 1
    assert "hunter2" not in wrong.output


# The round trip as a property: random topologies applied, exported, planned clean, re-applied identically.

QUEUE_NAMES = ("q0", "q1", "jobs.a", "jobs.b")
EXCHANGE_NAMES = ("x0", "x1", "events")
KEYS = ("", "a", "a.b", "#", "jobs.*")


@st.composite
def topologies(draw: st.DrawFn) -> dict[str, Any]:
    exchanges: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(EXCHANGE_NAMES), unique=True, max_size=3)):
        spec: dict[str, Any] = {"type": draw(st.sampled_from(["direct", "topic", "fanout", "headers"]))}
        if draw(st.integers(0, 4)) == 0:
            spec["internal"] = True
        if exchanges and draw(st.booleans()):
            spec["bindings"] = [
                {"exchange": draw(st.sampled_from(sorted(exchanges))), "routing_key": draw(st.sampled_from(KEYS))}
            ]
        exchanges[name] = spec
    sources = [*exchanges, "amq.topic", "amq.direct"]
    queues: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(QUEUE_NAMES), unique=True, min_size=1, max_size=4)):
        kind = draw(st.sampled_from(["classic", "classic", "quorum", "stream"]))
        spec = {} if kind == "classic" else {"type": kind}
        for _ in range(draw(st.integers(0, 2))):
            binding: dict[str, Any] = {"exchange": draw(st.sampled_from(sources))}
            if draw(st.booleans()):
                binding["routing_key"] = draw(st.sampled_from(KEYS))
            if exchanges.get(binding["exchange"], {}).get("type") == "headers":
                binding["arguments"] = {"x-match": draw(st.sampled_from(["all", "any"])), "kind": name}
            spec.setdefault("bindings", []).append(binding)
        if kind == "stream":
            spec.update(draw(st.fixed_dictionaries({}, optional={"max_age": st.sampled_from(["7D", "1h"])})))
            queues[name] = spec
            continue
        optional: dict[str, Any] = {
            "max_length": st.integers(0, 10_000),
            "message_ttl": st.integers(0, 86_400_000),
            "overflow": st.sampled_from(["drop-head", "reject-publish"]),
            "arguments": st.fixed_dictionaries({"x-note": st.sampled_from(["a$b", "plain", "yes"])}),
            "policy": st.fixed_dictionaries({"max-length": st.integers(1, 1000)}),
            "dead_letter": st.one_of(
                st.just(True),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "suffix": st.sampled_from(["dlq", "dead"]),
                        "routing_key": st.sampled_from(["parked", "a.b"]),
                        "queue_type": st.sampled_from(["classic", "quorum"]),
                        "via": st.sampled_from(["arguments", "policy"]),
                    },
                ),
            ),
        }
        if kind == "classic":
            optional["max_priority"] = st.integers(1, 10)
            if not DENY_DEPRECATED and draw(st.integers(0, 4)) == 0:  # refused where deprecated features are denied
                spec["durable"] = False
        else:
            optional["delivery_limit"] = st.integers(0, 20)
        spec.update(draw(st.fixed_dictionaries({}, optional=optional)))
        queues[name] = spec
    document: dict[str, Any] = {"version": 1, "vhost": "${TEST_VHOST}", "queues": queues}
    if exchanges:
        document["exchanges"] = exchanges
    if draw(st.booleans()):
        document["policies"] = {
            "long-lived": {"pattern": "^nothing-", "priority": 2, "definition": {"expires": 3_600_000}}
        }
    return document


@pytest.mark.broker
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(topologies())
def test_round_trip_of_random_topologies(document: dict[str, Any]) -> None:
    """apply -> export -> validate 0 -> plan clean -> apply the export elsewhere -> identical definitions."""
    folder = Path(__import__("tempfile").mkdtemp(prefix="export-"))
    first, second = (f"test-export-{uuid.uuid4().hex[:10]}" for _ in range(2))
    original = folder / "original.yaml"
    original.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        load([original], environ={"TEST_VHOST": first})
    except TopologyInvalid:
        assume(False)
    try:
        applied = run("apply", str(original), env={"TEST_VHOST": first})
        assert applied.exit_code == 0, applied.output
        exported = folder / "exported.yaml"
        result = export_to(exported, "--vhost", first)
        assert problem_lines(result) == [], result.stderr
        clean_plan(exported)
        wanted = load([original], environ={"TEST_VHOST": first})
        got = load([exported])
        for kind in ("exchanges", "queues", "bindings", "policies"):
            assert sorted(map(repr, getattr(got, kind))) == sorted(map(repr, getattr(wanted, kind))), kind
        again = folder / "again.yaml"
        again.write_text(with_vhost(exported.read_text(), second))
        assert run("apply", str(again)).exit_code == 0
        assert definitions_of(second) == definitions_of(first)
    finally:
        for vhost in (first, second):
            api("DELETE", f"vhosts/{quote(vhost, safe='')}")


# The inverse of expand, case by case and without a broker: loading the export gives back the objects read.


def queue(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "durable": True, "auto_delete": False, "arguments": arguments}


def exchange(name: str, kind: str = "direct") -> dict[str, Any]:
    return {"name": name, "type": kind, "durable": True, "auto_delete": False, "internal": False, "arguments": {}}


def bind(source: str, destination: str, key: str = "", kind: str = "queue") -> dict[str, Any]:
    return {"source": source, "destination": destination, "destination_type": kind, "routing_key": key, "arguments": {}}


def dead_letter_to(exchange_name: str, key: str) -> dict[str, str]:
    return {"x-dead-letter-exchange": exchange_name, "x-dead-letter-routing-key": key}


CASES: dict[str, tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]] = {
    "shared dead-letter pair": (
        {
            "exchanges": [exchange("shared.dlx")],
            "queues": [
                queue("a", **dead_letter_to("shared.dlx", "parked")),
                queue("b", **dead_letter_to("shared.dlx", "parked")),
                queue("parking"),
            ],
            "bindings": [bind("shared.dlx", "parking", "parked")],
        },
        {"a": {"dead_letter": {"exchange": "shared.dlx", "queue": "parking", "routing_key": "parked"}}},
    ),
    "quorum dead-letter queue of a classic queue": (
        {
            "exchanges": [exchange("jobs.dead")],
            "queues": [
                queue("jobs", **dead_letter_to("jobs.dead", "jobs.dead")),
                queue("jobs.dead", **{"x-queue-type": "quorum"}),
            ],
            "bindings": [bind("jobs.dead", "jobs.dead", "jobs.dead")],
        },
        {"jobs": {"dead_letter": {"queue_type": "quorum"}}},
    ),
    "own routing key and suffix": (
        {
            "exchanges": [exchange("jobs.dlq")],
            "queues": [queue("jobs", **dead_letter_to("jobs.dlq", "parked")), queue("jobs.dlq")],
            "bindings": [bind("jobs.dlq", "jobs.dlq", "parked")],
        },
        {"jobs": {"dead_letter": {"suffix": "dlq", "routing_key": "parked"}}},
    ),
    "dead-letter exchange with more bindings and a dead-letter queue with arguments": (
        {
            "exchanges": [exchange("jobs.dead"), exchange("audit", "fanout")],
            "queues": [
                queue("jobs", **dead_letter_to("jobs.dead", "jobs.dead")),
                queue("jobs.dead", **{"x-max-length": 10}),
                queue("audit"),
            ],
            "bindings": [
                bind("jobs.dead", "jobs.dead", "jobs.dead"),
                bind("jobs.dead", "audit", "", "exchange"),
                bind("audit", "audit"),
            ],
        },
        {"jobs": {"dead_letter": {"exchange": "jobs.dead", "queue": "jobs.dead"}}, "jobs.dead": {"max_length": 10}},
    ),
    "a policy the schema cannot take as policy:": (
        {
            "queues": [queue("jobs")],
            "policies": [
                {
                    "name": "provisioner.jobs",
                    "pattern": "^jobs$",
                    "apply-to": "queues",
                    "priority": 0,
                    "definition": {"federation-upstream-set": "all"},  # a key the broker knows, not a queue field
                }
            ],
        },
        {"jobs": {}},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loading_the_export_gives_back_the_objects_read(case: str, tmp_path: Path) -> None:
    from provisioner.export.source import Definitions
    from provisioner.live_state import live_from_definitions

    objects, expected_queues = CASES[case]
    objects = {kind: objects.get(kind, []) for kind in ("exchanges", "queues", "bindings", "policies")}
    result = export_topology(Definitions({"v": objects}, source="a test"))
    assert result.problems == []
    path = tmp_path / "export.yaml"
    path.write_text(result.text)
    loaded = load([path])
    live = live_from_definitions("v", objects).topology
    for kind in ("exchanges", "queues", "bindings", "policies"):
        assert sorted(map(repr, getattr(loaded, kind))) == sorted(map(repr, getattr(live, kind))), kind
    written = yaml.safe_load(result.text)["queues"]
    for name, body in expected_queues.items():
        assert {k: v for k, v in written[name].items() if k in body} == body, written


# A topology's consume: foreign, run_on and retry survive export --celery-app of an app on its rendered config.

ROUND_TRIP = """\
version: 1
vhost: VHOST
exchanges:
  jobs: {type: direct}
queues:
  celery: {}
  work:
    bindings: [{exchange: jobs, routing_key: work}]
  inbox: {}
tasks:
  shop.inbox.handle: {queue: inbox, consume: foreign, run_on: work}
  shop.work: {queue: work, retry: {max_retries: 5, delay: 2, via: broker}}
  shop.other.*: {queue: work, retry: {backoff: false, jitter: true}}
celery: {default_queue: celery}
"""

ROUND_TRIP_APP = """\
from celery import Celery

app = Celery("round_trip")
app.config_from_object("celeryconfig")


@app.task(name="shop.work")
def work():
    return None


@app.task(name="shop.inbox.handle")
def handle(body):
    return body


@app.task(name="shop.other.thing")
def thing():
    return None
"""


def test_foreign_run_on_and_retry_survive_export_of_an_app_on_its_rendered_config(
    tmp_path: Path, vhost_name: str
) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(ROUND_TRIP.replace("VHOST", vhost_name))
    assert run("apply", str(topology)).exit_code == 0
    assert run("render", str(topology), "-o", str(tmp_path / "celeryconfig.py")).exit_code == 0
    (tmp_path / "round_trip.py").write_text(ROUND_TRIP_APP)
    out = tmp_path / "exported.yaml"
    command = [sys.executable, "-m", "provisioner.cli", "export", "--vhost", vhost_name]
    command += ["--celery-app", "round_trip:app", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CELERY_BROKER_URL": amqp_url(vhost_name)}
    exported = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert exported.returncode == 0 and "problem:" not in exported.stderr, exported.stderr
    document = yaml.safe_load(out.read_text())
    assert document["tasks"] == yaml.safe_load(topology.read_text())["tasks"]
    assert "dropped" not in exported.stderr
    assert not any(".retry." in name for name in document["queues"])  # retry: {via: broker} makes them again
    clean_plan(out)


# Every routing form Celery accepts, read without a broker (a definitions file with no objects).

FORMS_APP = """\
import re

from celery import Celery, Task
from kombu import Exchange, Queue

app = Celery("forms", broker="amqp://localhost/shop")


def route_video(name, args, kwargs, options, task=None, **kw):
    return {"queue": "video"} if name.startswith("MOD.video.") else None


class Settings:
    task_queues = [
        Queue("feeds", Exchange("feeds", type="topic"), routing_key="feeds.#"),
        Queue("web", Exchange("web"), routing_key="web"),
        Queue("media", Exchange("media", type="fanout")),
        Queue("video", Exchange("video"), routing_key="video", queue_arguments={"x-max-priority": 10}),
        Queue("taskq", Exchange("taskq"), routing_key="taskq"),
        Queue("spare", Exchange("spare"), routing_key="spare"),
    ]
    task_routes = (
        [
            ("MOD.feed.*", {"queue": "feeds"}),
            ("MOD.web.*", {"queue": "web"}),
            (re.compile(r"MOD\\.(image|audio)\\..*"), {"queue": "media"}),
        ],
        route_video,
        {"MOD.x.exact": "web", "MOD.x.*": {"exchange": "feeds", "routing_key": "feeds.x"}},
    )


app.config_from_object(Settings)
for name in ["feed.a", "web.b", "image.c", "audio.d", "video.e", "x.exact", "x.other", "plain.f"]:

    def body():
        return None

    app.task(name="MOD." + name)(body)


@app.task(name="MOD.onq.g", queue="taskq")
def g():
    return None


@app.task(name="MOD.exq.i", exchange="web", routing_key="web")
def i():
    return None


class K(Task):
    name = "MOD.cls.h"
    queue = "taskq"

    def run(self):
        return None


app.register_task(K())
"""


def test_every_routing_form_is_exported_where_celery_sends_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"forms_{uuid.uuid4().hex[:8]}"  # task names of their own: Celery shares tasks across apps of a process
    (tmp_path / f"{module}.py").write_text(FORMS_APP.replace("MOD", module))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"vhosts": [{"name": "shop"}], "exchanges": [], "queues": [], "bindings": []}))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sub" / "topology.yaml"
    out.parent.mkdir()
    result = run("export", "--definitions", str(empty), "--celery-app", f"{module}:app", "-o", str(out))
    assert result.exit_code == 0 and problem_lines(result) == [], result.output
    text = out.read_text()
    schema = re.search(r"\$schema=(\S+)", text.splitlines()[0]).group(1)
    assert not schema.startswith("http") and (out.parent / schema).resolve().is_file()  # an editor can open it
    exported = yaml.safe_load(text)["tasks"]  # Celery shares other test apps' tasks with this one: only ours
    tasks = {k.removeprefix(f"{module}."): v["queue"] for k, v in exported.items() if k.startswith(f"{module}.")}
    assert tasks == {
        "audio.d": "media",  # a regex: by name
        "image.c": "media",
        "cls.h": "taskq",  # Task.queue
        "onq.g": "taskq",  # @app.task(queue=...)
        "exq.i": "web",  # @app.task(exchange=..., routing_key=...): where the broker puts it
        "video.e": "video",  # a router function
        "feed.*": "feeds",  # a list of (pattern, route) pairs in a tuple
        "web.*": "web",
        "x.exact": "web",
        "x.*": "feeds",  # exchange and routing key of a route: the topic binding takes it
    }
    document = yaml.safe_load(text)
    assert document["celery"] == {"default_queue": "celery"}
    assert document["queues"]["celery"] == {"bindings": [{"exchange": "celery", "routing_key": "celery"}]}
    assert f"task '{module}.video.e' is routed at publish time by router {module}.route_video" in result.stderr
    assert "queue 'spare' is in the app's task_queues but no exported task goes there" in result.stderr
    assert "is a regular expression, which tasks: cannot hold" in result.stderr
    assert run("validate", str(out)).exit_code == 0


def test_routes_celery_cannot_read_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"bad_routes_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from celery import Celery\napp = Celery('bad')\n"
        "app.conf.task_routes = [('a.*', {'queue': 'x'}), ('b.*', {'queue': 'y'})]\n"
    )
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"vhosts": [{"name": "/"}], "exchanges": []}))
    monkeypatch.chdir(tmp_path)
    result = run("export", "--definitions", str(empty), "--celery-app", f"{module}:app")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "goes inside a tuple" in result.stderr, result.stderr


def test_vhost_settings_and_operator_policies_survive_apply_then_export(tmp_path: Path, vhost_name: str) -> None:
    """Description, default queue type, limits and operator policies: applied, then exported from the live vhost."""
    topology = tmp_path / "topology.yaml"
    settings = {
        "description": "orders of the shop",
        "default_queue_type": "quorum",
        "limits": {"max-connections": 40, "max-queues": 300},
        "operator_policies": {
            "cap": {"pattern": "^orders", "apply_to": "queues", "priority": 3, "definition": {"max-length": 9000}}
        },
    }
    document = {"version": 1, "vhost": vhost_name, "queues": {"orders": {"type": "quorum", "delivery_limit": 5}}}
    topology.write_text(yaml.safe_dump({**document, **settings}, sort_keys=False))
    applied = run("apply", str(topology))
    assert applied.exit_code == 0, applied.output
    out = tmp_path / "exported.yaml"
    export_to(out, "--vhost", vhost_name)
    exported = yaml.safe_load(out.read_text())
    assert {key: exported.get(key) for key in settings} == settings
    clean_plan(out)


def test_an_exchange_the_app_declares_with_another_type_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"exchange_type_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from celery import Celery\nfrom kombu import Exchange, Queue\n"
        "app = Celery('x', broker='amqp://localhost/shop')\n"
        "app.conf.task_queues = [Queue('work', Exchange('jobs', type='topic'), routing_key='work.#')]\n"
        "app.conf.task_default_queue = 'work'\n"
    )
    queue = {"name": "work", "vhost": "shop", "durable": True, "auto_delete": False, "arguments": {}}
    jobs = {"name": "jobs", "vhost": "shop", "type": "direct", "durable": True, "auto_delete": False, "arguments": {}}
    binding = {"source": "jobs", "vhost": "shop", "destination": "work", "destination_type": "queue"}
    definitions = {"vhosts": [{"name": "shop"}], "exchanges": [jobs], "queues": [queue]}
    definitions["bindings"] = [{**binding, "routing_key": "work.#", "arguments": {}}]
    (tmp_path / "defs.json").write_text(json.dumps(definitions))
    monkeypatch.chdir(tmp_path)
    result = run("export", "--definitions", str(tmp_path / "defs.json"), "--celery-app", f"{module}:app")
    assert result.exit_code == 0
    assert [re.sub(r":\d+:", ":N:", line, count=1) for line in problem_lines(result)] == [
        "problem: <stdout>:N: the app declares exchange 'jobs' (queue 'work') of type 'topic', the broker holds "
        "it as 'direct': its workers would fail with PRECONDITION_FAILED"
    ]


@pytest.mark.parametrize(
    ("objects", "line"),
    [
        (
            {"queues": [{"name": "a", "vhost": "/", "auto_delete": False}]},
            "queue #1 (name 'a', vhost '/') has no 'durable'",
        ),
        (
            {"queues": [{"name": "a", "durable": "yes", "auto_delete": False}]},
            "queue #1 (name 'a') has durable 'yes'; RabbitMQ takes true or false",
        ),
        (
            {"queues": [{"name": "a", "durable": True, "auto_delete": False, "arguments": None}]},
            "queue #1 (name 'a') has arguments None; RabbitMQ takes an object",
        ),
        (
            {"policies": [{"name": "p", "pattern": "^a", "definition": {}, "priority": "high"}]},
            "policy #1 (name 'p', pattern '^a') has priority 'high'; RabbitMQ takes an integer",
        ),
        ({"exchanges": [{"name": "e", "durable": True}]}, "exchange #1 (name 'e') has no 'type'"),
        ({"bindings": ["not an object"]}, "binding #1 is not an object"),
        (
            {"users": [{"name": "u", "tags": True}]},
            "user #1 (name 'u') has tags True; RabbitMQ takes a string or a list",
        ),
        ({"users": [{"name": "u", "tags": [1]}]}, "user #1 (name 'u') has tags [1]; RabbitMQ takes a list of strings"),
        (
            {"permissions": [{"user": ["a"], "vhost": "/"}]},
            "permission #1 (vhost '/') has user ['a']; RabbitMQ takes a string",
        ),
    ],
)
def test_a_file_with_an_object_rabbitmq_refuses_is_one_line_naming_it(
    objects: dict[str, Any], line: str, tmp_path: Path
) -> None:
    file = tmp_path / "defs.json"
    file.write_text(json.dumps({"vhosts": [{"name": "/"}], **objects}))
    result = run("export", "--definitions", str(file))
    assert result.exit_code == 1
    assert result.stderr == f"error: definitions file {file}: {line}\n"


def test_tasks_of_the_modules_the_worker_imports_are_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks in modules named by ``include`` (as `celery worker` imports them), not in the app module."""
    name = f"included_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}_app.py").write_text(
        "from celery import Celery\nfrom kombu import Queue\n"
        f"app = Celery('proj', broker='amqp://localhost/shop', include=['{name}_tasks'])\n"
        "app.conf.task_queues = [Queue('celery'), Queue('slow')]\n"
    )
    (tmp_path / f"{name}_tasks.py").write_text(
        f"from {name}_app import app\n\n\n@app.task(name='{name}.crunch', queue='slow')\ndef crunch():\n    return 1\n"
    )
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"vhosts": [{"name": "shop"}], "exchanges": []}))
    monkeypatch.chdir(tmp_path)
    result = run("export", "--definitions", str(empty), "--celery-app", f"{name}_app:app")
    assert result.exit_code == 0, result.output
    tasks = yaml.safe_load(result.stdout)["tasks"]  # with other test apps' tasks Celery shares with this one
    assert {k: v for k, v in tasks.items() if k.startswith(name)} == {f"{name}.crunch": {"queue": "slow"}}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    kind=st.sampled_from(
        ["exchanges", "queues", "bindings", "policies", "parameters", "vhosts", "users", "permissions"]
    ),
    field=st.sampled_from(
        [
            "name",
            "type",
            "durable",
            "auto_delete",
            "internal",
            "arguments",
            "source",
            "destination",
            "destination_type",
            "routing_key",
            "pattern",
            "definition",
            "priority",
            "apply-to",
            "value",
            "component",
            "vhost",
            "metadata",
            "limits",
            "tags",
            "user",
            "configure",
        ]
    ),
    value=JSON_VALUES,
    drop=st.booleans(),
)
def test_a_mangled_definitions_file_is_exported_or_refused_in_one_line(
    kind: str, field: str, value: Any, drop: bool, tmp_path_factory: Any
) -> None:
    """One field of a real-shaped file dropped or set to any JSON value: a topology, or one line; never a traceback."""
    data = json.loads((Path(__file__).parent.parent / "corpus" / "definitions" / "celery_production.json").read_text())
    data["parameters"] = [{"vhost": "jobs", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 9}}]
    item = data[kind][0]
    if drop:
        item.pop(field, None)
    else:
        item[field] = value
    file = tmp_path_factory.mktemp("mangled") / "defs.json"
    file.write_text(json.dumps(data))
    result = run("export", "--definitions", str(file), "--vhost", "jobs")
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    if result.exit_code == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    else:
        assert result.exit_code == 0 and result.stdout.startswith("# yaml-language-server"), result.output


def test_an_app_celery_cannot_route_everywhere_exports_what_validate_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No default queue (task_create_missing_queues off) and a route to a queue task_queues lacks: named, no crash."""
    name = f"strict_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from celery import Celery\nfrom kombu import Queue\n"
        "app = Celery('strict', broker='amqp://localhost/shop')\n"
        "app.conf.task_queues = [Queue('a')]\napp.conf.task_create_missing_queues = False\n"
        f"app.conf.task_routes = {{'{name}.lost.*': {{'queue': 'missing'}}}}\n\n\n"
        f"@app.task(name='{name}.lost.one')\ndef one():\n    return 1\n"
    )
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"vhosts": [{"name": "shop"}], "exchanges": []}))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.yaml"
    result = run("export", "--definitions", str(empty), "--celery-app", f"{name}:app", "-o", str(out))
    assert result.exit_code == 0, result.output
    ours = [line.split(": ", 2)[2] for line in problem_lines(result) if name in line]  # not other apps' shared tasks
    assert ours == [
        f"task '{name}.lost.one' cannot be sent by the app itself "
        "(QueueNotFound: \"Queue 'missing' missing from task_queues\"); left out"
    ]
    assert "celery.default_queue is 'a'" in result.stderr
    assert yaml.safe_load(out.read_text())["celery"] == {"default_queue": "a"}
    assert run("validate", str(out)).exit_code == 0


@pytest.mark.parametrize("installed", [True, False], ids=["install(app)", "plain"])
def test_an_app_that_installs_provisioners_runtime_is_exported_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: bool
) -> None:
    """``celery.runtime: provisioner`` only for an app module that calls provisioner.celery.install(app)."""
    name = f"runtime_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from celery import Celery\n"
        "from provisioner.celery import install\n"
        "app = Celery('proj', broker='amqp://localhost/shop')\n"
        f"@app.task(name='{name}.crunch')\ndef crunch():\n    return 1\n" + ("install(app)\n" if installed else "")
    )
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"vhosts": [{"name": "shop"}], "exchanges": []}))
    monkeypatch.chdir(tmp_path)
    result = run("export", "--definitions", str(empty), "--celery-app", f"{name}:app")
    assert result.exit_code == 0, result.output
    celery = yaml.safe_load(result.stdout)["celery"]
    assert celery.get("runtime") == ("provisioner" if installed else None), celery


BROADCAST_APP = """
from celery import Celery
from kombu import Queue
from kombu.common import Broadcast

app = Celery("bc", broker="{url}")
app.conf.task_queues = (Queue("default"), Broadcast("broadcast_tasks"))
app.conf.task_default_queue = "default"
app.conf.task_routes = {{"{name}.ping": {{"queue": "broadcast_tasks", "exchange": "broadcast_tasks"}}}}


@app.task(name="{name}.ping")
def ping():
    return "pong"


@app.task(name="{name}.work")
def work():
    return 1
"""


def test_a_broadcast_queue_exports_its_exchange_and_says_its_tasks_stay_with_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vhost_name: str
) -> None:
    """kombu's Broadcast: each worker declares its own bcast.<uuid> queue (auto-delete) bound to a fanout
    exchange. The export keeps the exchange, never a worker's random queue, and names the task it cannot route;
    on the broker, a worker's broadcast queue is Celery's own: never pruned, never exported."""
    name = f"bcast_{uuid.uuid4().hex[:8]}"
    api("PUT", f"vhosts/{quote(vhost_name, safe='')}").raise_for_status()
    (tmp_path / f"{name}.py").write_text(BROADCAST_APP.format(url=amqp_url(vhost_name), name=name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    with Connection(amqp_url(vhost_name)) as connection:  # what a worker declares at its start
        worker_queue = module.app.amqp.queues["broadcast_tasks"](connection.default_channel)
        worker_queue.declare()
        assert worker_queue.name.startswith("bcast.") and worker_queue.auto_delete
        result = run("export", "--vhost", vhost_name, "--celery-app", f"{name}:app")
        assert result.exit_code == 0, result.output
        document = yaml.safe_load(result.stdout)
        assert document["exchanges"]["broadcast_tasks"] == {"type": "fanout"}
        assert not any(queue.startswith("bcast.") for queue in document.get("queues", {})), document
        assert f"{name}.ping" not in (document.get("tasks") or {})
        said = [line for line in result.stderr.splitlines() if f"task '{name}.ping' is broadcast" in line]
        assert len(said) == 1 and "left out of tasks" in said[0], result.stderr
        topology = tmp_path / "exported.yaml"
        topology.write_text(result.stdout)
        pruned = run("apply", "--prune", str(topology))
        assert pruned.exit_code == 0, pruned.output
        assert worker_queue.name not in pruned.output
        assert api("GET", f"queues/{quote(vhost_name, safe='')}/{worker_queue.name}").status_code == 200
