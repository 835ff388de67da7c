"""A worker from the rendered config with events, gossip, mingle and remote control on, on the broker under test.

On the 4.3-deny leg this is RabbitMQ 4.3.6 refusing every transient non-exclusive
queue (541, which closes the whole connection): Celery 5.7 declares its event,
gossip and reply queues exclusive, so the worker runs, answers a ping and sends
events a monitor receives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from urllib.parse import quote

from celery_worker import APP_DIR, Worker, counts, publisher
from click.testing import CliRunner
from rabbit import amqp_url, api, wait_for

from provisioner.cli import main

TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  celery: {type: direct}
queues:
  celery:
    type: quorum
    bindings: [{exchange: celery, routing_key: celery}]
    dead_letter: true
tasks:
  e2e.*: {queue: celery}
celery:
  default_queue: celery
"""


def _worker_with_everything_on(folder: Path, vhost: str) -> Worker:
    """`celery worker -E` with gossip, mingle and heartbeats left on (the Worker helper turns them off)."""
    worker = Worker.__new__(Worker)
    worker.observed, worker.log = folder / "observed.jsonl", folder / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(APP_DIR)]),
        "CELERY_BROKER_URL": amqp_url(vhost),
        "E2E_OBSERVED": str(worker.observed),
    }
    command = [sys.executable, "-m", "celery", "-A", "e2e_app", "worker", "-P", "solo", "-l", "INFO", "-E"]
    with open(worker.log, "wb") as log:
        worker.process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    return worker


def test_a_worker_with_events_and_remote_control_runs_where_deprecated_features_are_denied(
    tmp_path: Path, vhost_name: str
) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(textwrap.dedent(TOPOLOGY))
    env = {"TEST_VHOST": vhost_name}
    assert CliRunner().invoke(main, ["apply", str(topology)], env=env).exit_code == 0
    rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(tmp_path / "celeryconfig.py")], env=env)
    assert rendered.exit_code == 0, rendered.output
    worker = _worker_with_everything_on(tmp_path, vhost_name)
    app = publisher(tmp_path, vhost_name)
    events: list[dict] = []
    try:
        wait_for(lambda: counts(vhost_name, "celery")[1] == 1 and " ready." in worker.output(), timeout=60)
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={"*": events.append})
            monitor = threading.Thread(target=receiver.capture, kwargs={"limit": None, "timeout": None}, daemon=True)
            monitor.start()
            try:
                replies = wait_for(lambda: app.control.ping(timeout=1.0), timeout=60)
                assert [next(iter(reply.values())) for reply in replies] == [{"ok": "pong"}]
                app.send_task("e2e.works", args=[7])
                wait_for(lambda: {"task": "works", "value": 7} in worker.records(), timeout=60)
                wait_for(lambda: any(event["type"] == "task-succeeded" for event in events), timeout=60)
            finally:
                receiver.should_stop = True
                monitor.join(timeout=30)
        listed = api("GET", f"queues/{quote(vhost_name, safe='')}").json()
        own = [q for q in listed if q["name"].endswith(".celery.pidbox") or q["name"].startswith("celeryev.")]
        assert any(q["name"].endswith(".celery.pidbox") for q in own) and any(
            q["name"].startswith("celeryev.") for q in own
        ), own
        assert all(q["exclusive"] and not q["durable"] for q in own), own  # none a 4.3 with deny refuses
        assert worker.process.poll() is None, worker.output()[-3000:]
    finally:
        worker.stop()
    assert "transient_nonexcl_queues" not in worker.output() and "NOT_IMPLEMENTED" not in worker.output()
