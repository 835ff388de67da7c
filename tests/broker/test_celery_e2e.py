"""A real `celery worker` on the rendered config against a broker that `provision apply` set up."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from celery_worker import counts, drain, publisher, start_worker
from click.testing import CliRunner
from rabbit import api, parameters, wait_for

from provisioner.cli import main

TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  celery: {type: direct}
  example: {type: topic}
queues:
  celery:
    type: QUEUE_TYPE
    bindings: [{exchange: celery, routing_key: celery}]
    dead_letter: true
  example:
    bindings: [{exchange: example, routing_key: com.example}]
    dead_letter: true
tasks:
  catalog.tasks.process_catalog_event:
    queue: example
    consume: foreign
    retry: {max_retries: 2, delay: 0, backoff: false}
  e2e.always_fails:
    queue: celery
    retry: {max_retries: 2, delay: 0, backoff: false}
  e2e.*:
    queue: celery
celery:
  default_queue: celery
"""


@pytest.fixture
def provisioned(tmp_path: Path, vhost_name: str, request: pytest.FixtureRequest) -> Iterator[tuple[Path, str]]:
    """Apply the topology (queue type from the test's parameter) and render its config into tmp_path."""
    queue_type = getattr(request, "param", "classic")
    topology = tmp_path / "topology.yaml"
    topology.write_text(textwrap.dedent(TOPOLOGY).replace("QUEUE_TYPE", queue_type))
    env = {"TEST_VHOST": vhost_name}
    applied = CliRunner().invoke(main, ["apply", str(topology)], env=env)
    assert applied.exit_code == 0, applied.output
    rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(tmp_path / "celeryconfig.py")], env=env)
    assert rendered.exit_code == 0, rendered.output
    yield tmp_path, vhost_name


def test_foreign_messages_and_failed_tasks_reach_the_right_queues(provisioned: tuple[Path, str]) -> None:
    folder, vhost = provisioned
    worker = start_worker(folder, vhost)
    try:
        connection = pika.BlockingConnection(parameters(vhost))
        channel = connection.channel()
        channel.confirm_delivery()
        json_props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        channel.basic_publish("example", "com.example", b'{"id": 1}', json_props)
        channel.basic_publish("example", "com.example", b"{not json", pika.BasicProperties(delivery_mode=2))
        channel.basic_publish("example", "com.example", b'{"id": 2, "fail": true}', json_props)
        connection.close()
        app = publisher(folder, vhost)
        app.send_task("e2e.always_fails")
        app.send_task("e2e.works", args=[7])

        wait_for(lambda: counts(vhost, "celery.dead")[0] == 2 and counts(vhost, "example.dead")[0] == 1, timeout=60)
        wait_for(lambda: any(r["task"] == "works" for r in worker.records()), timeout=30)
        assert counts(vhost, "example")[0] == 0 and counts(vhost, "celery")[0] == 0  # nothing stuck
    finally:
        worker.stop()

    records = worker.records()
    assert {"task": "process_catalog_event", "body": {"id": 1}, "attempt": 0} in records
    assert sorted(r["attempt"] for r in records if r.get("body", {}).get("id") == 2) == [0, 1, 2]
    assert sorted(r["attempt"] for r in records if r["task"] == "always_fails") == [0, 1, 2]
    assert {"task": "works", "value": 7} in records

    (body, headers), *rest = drain(vhost, "example.dead")
    assert body == b"{not json" and not rest
    assert headers["x-exception"].startswith("UndecodableBody: not JSON (") and headers["x-failed-queue"] == "example"
    dead = {h["x-failed-task"]: h for _, h in drain(vhost, "celery.dead")}
    assert set(dead) == {"catalog.tasks.process_catalog_event", "e2e.always_fails"}
    assert dead["e2e.always_fails"]["x-exception"] == "RuntimeError: always fails"
    assert dead["catalog.tasks.process_catalog_event"]["x-exception"] == "ValueError: cannot process 2"
    assert "Traceback" in dead["e2e.always_fails"]["x-exception-traceback"]
    assert dead["e2e.always_fails"]["task"] == "e2e.always_fails"  # a replayable Celery message
    assert "PRECONDITION_FAILED" not in worker.output()


@pytest.mark.parametrize("provisioned", ["quorum"], indirect=True)
def test_the_worker_starts_on_quorum_queues_without_precondition_failed(provisioned: tuple[Path, str]) -> None:
    folder, vhost = provisioned
    worker = start_worker(folder, vhost)
    try:
        publisher(folder, vhost).send_task("e2e.works", args=[42])
        wait_for(lambda: {"task": "works", "value": 42} in worker.records(), timeout=30)
        assert worker.process.poll() is None
    finally:
        worker.stop()
    assert "PRECONDITION_FAILED" not in worker.output() and "NOT_IMPLEMENTED" not in worker.output()
    assert (
        CliRunner()
        .invoke(main, ["plan", "--detailed-exitcode", str(folder / "topology.yaml")], env={"TEST_VHOST": vhost})
        .exit_code
        == 0
    )  # Celery's own objects are no drift


DELAYED = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  tasks: {type: topic}
  notify: {type: headers}
queues:
  celery:
    type: quorum
    bindings: [{exchange: tasks, routing_key: celery}]
    dead_letter: true
  notify.email:
    type: quorum
    bindings: [{exchange: notify, arguments: {x-match: all, channel: email}}]
  notify.sms:
    bindings: [{exchange: notify, arguments: {x-match: all, channel: sms}}]
tasks:
  e2e.notify:
    queue: notify.email
  e2e.*:
    queue: celery
celery:
  default_queue: celery
"""


@pytest.fixture
def delayed(tmp_path: Path, vhost_name: str) -> Iterator[tuple[Path, str]]:
    """Quorum queues behind a topic and a headers exchange: Celery's native delayed delivery is on."""
    topology = tmp_path / "topology.yaml"
    topology.write_text(textwrap.dedent(DELAYED))
    env = {"TEST_VHOST": vhost_name}
    applied = CliRunner().invoke(main, ["apply", str(topology)], env=env)
    assert applied.exit_code == 0, applied.output
    rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(tmp_path / "celeryconfig.py")], env=env)
    assert rendered.exit_code == 0, rendered.output
    yield tmp_path, vhost_name


def _bindings(vhost: str, queue: str) -> set[tuple[str, str]]:
    found = api("GET", f"queues/{quote(vhost, safe='')}/{quote(queue, safe='')}/bindings").json()
    return {(b["source"], b["routing_key"]) for b in found}


def test_countdown_tasks_arrive_after_apply_prune(delayed: tuple[Path, str]) -> None:
    folder, vhost = delayed
    env = {"TEST_VHOST": vhost}
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()  # what an old config's worker or a hand left behind: prune takes them
    channel.queue_bind("celery", "tasks", "#.other")
    channel.queue_bind("notify.email", "notify", "#.")
    connection.close()
    worker = start_worker(folder, vhost, queues=("celery", "notify.email"))
    try:
        assert ("tasks", "#.celery") in _bindings(vhost, "celery")  # the worker's native delayed delivery
        planned = CliRunner().invoke(main, ["plan", str(folder / "topology.yaml")], env=env)
        assert "#.celery" not in planned.output and "#.other" in planned.output, planned.output
        pruned = CliRunner().invoke(main, ["apply", "--prune", str(folder / "topology.yaml")], env=env)
        assert pruned.exit_code == 0, pruned.output
        assert "Applied: 0 created, 0 updated, 0 replaced, 2 deleted" in pruned.output, pruned.output
        assert ("tasks", "#.celery") in _bindings(vhost, "celery")
        assert ("tasks", "#.other") not in _bindings(vhost, "celery")

        sent = time.time()
        publisher(folder, vhost).send_task("e2e.stamp", args=[3], countdown=3)
        record = wait_for(lambda: next((r for r in worker.records() if r["task"] == "stamp"), None), timeout=60)
        assert record["value"] == 3 and record["at"] - sent >= 3  # it waited in the broker, then arrived
    finally:
        worker.stop()
    replanned = CliRunner().invoke(main, ["plan", "--detailed-exitcode", str(folder / "topology.yaml")], env=env)
    assert replanned.exit_code == 0 and "Not in the topology" not in replanned.output, replanned.output


def test_a_headers_exchange_routes_as_the_topology_says_while_a_worker_runs(delayed: tuple[Path, str]) -> None:
    folder, vhost = delayed
    # The worker consumes only `celery`: notify.email stays one of its task_queues (Celery binds and routes it)
    # but nothing takes messages off it, so what reaches it is counted exactly.
    worker = start_worker(folder, vhost, queues=("celery",), only=True)
    try:
        connection = pika.BlockingConnection(parameters(vhost))
        channel = connection.channel()
        channel.confirm_delivery()  # confirmed means routed: the counts below are final
        for number in range(5):
            properties = pika.BasicProperties(headers={"channel": "sms"}, delivery_mode=2)
            channel.basic_publish("notify", "", f"sms {number}".encode(), properties)
        connection.close()
        assert counts(vhost, "notify.sms")[0] == 5
        assert counts(vhost, "notify.email")[0] == 0  # no binding of the worker's captured them

        publisher(folder, vhost).send_task("e2e.notify", args=["hello"])  # a Celery task for notify.email
        assert counts(vhost, "notify.email")[0] == 1  # arrives (through the default exchange), alone
        assert counts(vhost, "notify.sms")[0] == 5
        assert {key for source, key in _bindings(vhost, "notify.email") if source == "notify"} == {""}  # no "#."
        assert worker.process.poll() is None
    finally:
        worker.stop()
    assert "unknown message" not in worker.output()


WAITS = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  celery: {type: direct}
queues:
  celery:
    bindings: [{exchange: celery, routing_key: celery}]
    dead_letter: true
tasks:
  e2e.always_fails:
    queue: celery
    retry: {via: worker, delay: 1, max_retries: 2}   # backoff (the default): waits 1 s, then 2 s
  e2e.*:
    queue: celery
celery:
  default_queue: celery
"""


def test_worker_retries_wait_the_topologys_delay(tmp_path: Path, vhost_name: str) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(textwrap.dedent(WAITS))
    env = {"TEST_VHOST": vhost_name}
    assert CliRunner().invoke(main, ["apply", str(topology)], env=env).exit_code == 0
    rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(tmp_path / "celeryconfig.py")], env=env)
    assert rendered.exit_code == 0, rendered.output
    worker = start_worker(tmp_path, vhost_name, queues=("celery",))
    try:
        publisher(tmp_path, vhost_name).send_task("e2e.always_fails")
        wait_for(lambda: counts(vhost_name, "celery.dead")[0] == 1, timeout=60)
    finally:
        worker.stop()
    times = sorted(r["at"] for r in worker.records() if r["task"] == "always_fails")
    assert len(times) == 3
    assert times[1] - times[0] >= 1 and times[2] - times[1] >= 2  # no jitter: the delay is the wait
    assert "Retry in 1s" in worker.output() and "Retry in 2s" in worker.output()


RUN_ON = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  celery: {type: direct}
  example: {type: topic}
queues:
  celery:
    bindings: [{exchange: celery, routing_key: celery}]
    dead_letter: true
  catalog:
    dead_letter: true
  example:
    bindings: [{exchange: example, routing_key: com.example}]
    dead_letter: true
tasks:
  catalog.tasks.process_catalog_event:
    queue: example
    consume: foreign
    run_on: catalog
    retry: {max_retries: 1, delay: 0}
celery:
  default_queue: celery
"""


def test_a_foreign_task_runs_on_the_queue_the_topology_names(tmp_path: Path, vhost_name: str) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(textwrap.dedent(RUN_ON))
    env = {"TEST_VHOST": vhost_name}
    assert CliRunner().invoke(main, ["apply", str(topology)], env=env).exit_code == 0
    rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(tmp_path / "celeryconfig.py")], env=env)
    assert rendered.exit_code == 0, rendered.output
    worker = start_worker(tmp_path, vhost_name, queues=("celery", "catalog", "example"))
    try:
        connection = pika.BlockingConnection(parameters(vhost_name))
        channel = connection.channel()
        channel.confirm_delivery()
        json_props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        channel.basic_publish("example", "com.example", b'{"id": 1}', json_props)
        channel.basic_publish("example", "com.example", b'{"id": 2, "fail": true}', json_props)
        connection.close()
        wait_for(lambda: counts(vhost_name, "catalog.dead")[0] == 1, timeout=60)
        wait_for(lambda: {"task": "process_catalog_event", "body": {"id": 1}, "attempt": 0} in worker.records())
    finally:
        worker.stop()
    assert counts(vhost_name, "celery.dead")[0] == 0 and counts(vhost_name, "example.dead")[0] == 0
    assert counts(vhost_name, "celery")[0] == 0  # the tasks ran on catalog, never on the default queue
    (body, headers), *rest = drain(vhost_name, "catalog.dead")
    assert not rest
    assert headers["x-failed-queue"] == "catalog" and headers["x-failed-task"] == "catalog.tasks.process_catalog_event"
    assert headers["x-foreign-queue"] == "example"  # where the message came from
    assert headers["x-foreign-exchange"] == "example" and headers["x-foreign-routing-key"] == "com.example"
    assert b'"id": 2' in body  # the Celery message holds the JSON body as the task's one argument


def test_a_failed_task_whose_dead_letter_exchange_is_gone_stays_in_the_broker(provisioned: tuple[Path, str]) -> None:
    """Someone deleted celery.dead by hand: the failed task goes back to its queue instead of being dropped."""
    folder, vhost = provisioned
    assert api("DELETE", f"exchanges/{quote(vhost, safe='')}/celery.dead").status_code == 204
    worker = start_worker(folder, vhost)
    try:
        publisher(folder, vhost).send_task("e2e.always_fails")
        wait_for(lambda: "could not publish e2e.always_fails" in worker.output(), timeout=60)
        assert "goes back to queue 'celery'" in worker.output()
    finally:
        worker.stop()
    assert counts(vhost, "celery")[0] == 1  # the task is still in the broker, once
    assert counts(vhost, "celery.dead")[0] == 0
