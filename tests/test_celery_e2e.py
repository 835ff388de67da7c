"""A real `celery worker` on the rendered config against a broker that `provision apply` set up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from celery import Celery
from click.testing import CliRunner
from rabbit import parameters, wait_for

from provisioner.cli import main

APP_DIR = Path(__file__).parent / "celery_app"

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


class Worker:
    """A `celery worker` subprocess (solo pool) on the rendered config."""

    def __init__(self, folder: Path, vhost: str) -> None:
        self.observed = folder / "observed.jsonl"
        self.log = folder / "worker.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(folder), str(APP_DIR)]),
            "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "E2E_OBSERVED": str(self.observed),
        }
        command = [sys.executable, "-m", "celery", "-A", "e2e_app", "worker", "-P", "solo", "-l", "INFO"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)

    def records(self) -> list[dict]:
        if not self.observed.exists():
            return []
        return [json.loads(line) for line in self.observed.read_text().splitlines()]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def counts(vhost: str, queue: str) -> tuple[int, int]:
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        ok = connection.channel().queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count
    finally:
        connection.close()


def drain(vhost: str, queue: str) -> list[tuple[bytes, dict]]:
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    found = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        found.append((body, properties.headers or {}))
    connection.close()
    return found


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


def start_worker(folder: Path, vhost: str) -> Worker:
    worker = Worker(folder, vhost)
    try:
        wait_for(lambda: counts(vhost, "celery")[1] == 1 and counts(vhost, "example")[1] == 1, timeout=60)
    except AssertionError:
        worker.stop()
        raise AssertionError(f"worker did not start consuming:\n{worker.output()[-3000:]}") from None
    return worker


def publisher(folder: Path, vhost: str) -> Celery:
    """A publishing app on the same rendered config, as a web process would have."""
    app = Celery("publisher")
    sys.path.insert(0, str(folder))
    try:
        app.config_from_object("celeryconfig", force=True)
        app.conf.broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        app.conf.task_queues  # noqa: B018 - load the module now, while it is on the path
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("celeryconfig", None)
    return app


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
    assert headers["x-death"][0]["reason"] == "rejected"
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
