"""Broker-side retries (`retry: {via: broker}`): a waiting retry lives in a TTL queue, not in a worker."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from celery_worker import counts, drain, publisher, start_worker
from click.testing import CliRunner
from rabbit import wait_for

from provisioner.cli import main

TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  celery: {type: direct}
queues:
  celery:
    type: QUEUE_TYPE
    bindings: [{exchange: celery, routing_key: celery}]
    dead_letter: true
tasks:
  e2e.always_fails:
    queue: celery
    retry: {max_retries: 2, delay: 2, backoff: false, via: broker}
  e2e.*:
    queue: celery
celery:
  default_queue: celery
"""


def provision(folder: Path, vhost: str, queue_type: str) -> Path:
    topology = folder / "topology.yaml"
    topology.write_text(textwrap.dedent(TOPOLOGY).replace("QUEUE_TYPE", queue_type))
    env = {"TEST_VHOST": vhost}
    applied = CliRunner().invoke(main, ["apply", str(topology)], env=env)
    assert applied.exit_code == 0, applied.output
    assert "+ queue celery.retry.2s" in applied.output
    rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(folder / "celeryconfig.py")], env=env)
    assert rendered.exit_code == 0, rendered.output
    return topology


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_waiting_retry_survives_a_worker_stop_and_ends_dead_lettered(
    tmp_path: Path, vhost_name: str, queue_type: str
) -> None:
    vhost = vhost_name
    topology = provision(tmp_path, vhost, queue_type)
    hold = tmp_path / "hold.flag"  # the first attempt runs until the worker has stopped consuming
    hold.touch()
    # A thread pool: the worker answers a control command while the attempt is held in its other thread.
    worker = start_worker(tmp_path, vhost, queues=("celery",), pool="threads")
    try:
        app = publisher(tmp_path, vhost)
        app.send_task("e2e.always_fails")
        wait_for(lambda: [r["attempt"] for r in worker.records()] == [0])
        # The worker answers once the broker confirmed the cancel (a quorum queue still counts the consumer
        # until its unacked attempt is settled, so the reply, not the count, is the condition here).
        replies = app.control.cancel_consumer("celery", reply=True, limit=1, timeout=600)
        assert len(replies) == 1, replies
        hold.unlink()  # the attempt fails and publishes its retry, which nothing in this worker can take
        wait_for(lambda: counts(vhost, "celery")[1] == 0)  # the broker agrees: nobody consumes the work queue
    finally:
        worker.stop()
    logs = worker.output()
    assert "Retry in 2s, waiting in celery.retry.2s" in logs  # the first worker published the retry...
    assert [r["attempt"] for r in worker.records()] == [0]  # ...and never ran it: it waited in the broker
    # No worker runs: the broker alone brings the retry back to the work queue when its TTL runs out.
    wait_for(lambda: counts(vhost, "celery") == (1, 0))
    assert counts(vhost, "celery.retry.2s")[0] == 0

    worker = start_worker(tmp_path, vhost, queues=("celery",))
    try:
        wait_for(lambda: counts(vhost, "celery.dead")[0] == 1, timeout=60)
        assert counts(vhost, "celery")[0] == 0 and counts(vhost, "celery.retry.2s")[0] == 0  # nothing stuck
    finally:
        worker.stop()

    attempts = [r for r in worker.records() if r["task"] == "always_fails"]
    assert sorted(r["attempt"] for r in attempts) == [0, 1, 2]
    times = sorted(r["at"] for r in attempts)
    assert times[2] - times[1] >= 1.9  # the second retry waited its 2 s in the retry queue too
    (_, headers), *rest = drain(vhost, "celery.dead")
    assert not rest
    assert headers["x-failed-task"] == "e2e.always_fails" and headers["x-exception"] == "RuntimeError: always fails"
    assert [(d["queue"], d["reason"]) for d in headers["x-death"]] == [("celery.retry.2s", "expired")]
    assert "PRECONDITION_FAILED" not in worker.output()
    # The logs say what happens: the wait and where it waits, no countdown that is not one, where it went.
    logs += worker.output()
    assert "Retry in 2s, waiting in celery.retry.2s" in logs
    assert "Retry in 0s" not in logs and "no retry queue" not in logs
    assert "dead-lettered to exchange 'celery.dead', key 'celery.dead'" in logs
    replanned = CliRunner().invoke(main, ["plan", "--detailed-exitcode", str(topology)], env={"TEST_VHOST": vhost})
    assert replanned.exit_code == 0, replanned.output
