"""Every way a Celery task can end, against one real prefork worker: where it lands, counted over AMQP.

Each case is a row of the table "Where every way a task ends lands" in docs/celery.md
(the table is parsed and compared with ROWS below), run as a plain task, through
a countdown or ETA (classic and quorum queues, topic and direct exchanges) and
as a foreign message's task. One worker serves the whole module (prefork,
concurrency 2); the cases run one after another, so every count is the case's own.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
from celery_fuzz import SEED, fuzzed_bodies, handed_over, too_large
from celery_worker import Worker, counts, drain, publisher, start_worker
from click.testing import CliRunner
from rabbit import fresh_vhost, parameters, wait_for

from provisioner.cli import main

CELERY_PAGE = Path(__file__).resolve().parent.parent.parent / "docs" / "celery.md"
TABLE_HEADING = "Where every way a task ends lands"
QUEUES = ("celery", "ctopic", "qdirect", "qtopic")  # classic/quorum behind direct/topic exchanges
CONSUMED = (*QUEUES, "example", "limited")
RETRIES = "{max_retries: 1, delay: 1, backoff: false}"

TOPOLOGY = f"""
version: 1
vhost: ${{TEST_VHOST}}
exchanges:
  direct: {{type: direct}}
  topic: {{type: topic}}
  example: {{type: topic}}
queues:
  celery: {{bindings: [{{exchange: direct, routing_key: celery}}], dead_letter: true}}
  ctopic: {{bindings: [{{exchange: topic, routing_key: ctopic}}], dead_letter: true}}
  qdirect: {{type: quorum, bindings: [{{exchange: direct, routing_key: qdirect}}], dead_letter: true}}
  qtopic: {{type: quorum, bindings: [{{exchange: topic, routing_key: qtopic}}], dead_letter: true}}
  example: {{bindings: [{{exchange: example, routing_key: com.example}}], dead_letter: true}}
  limited: {{bindings: [{{exchange: example, routing_key: com.limited}}], dead_letter: true}}
tasks:
  m.foreign: {{queue: example, consume: foreign, run_on: qtopic, retry: {RETRIES}}}
  m.foreign_limited: {{queue: limited, consume: foreign, run_on: qtopic, retry: {RETRIES}}}
{"".join(f"  m.wretry.{q}: {{queue: {q}, retry: {RETRIES}}}{chr(10)}" for q in QUEUES)}\
{"".join(f"  m.bretry.{q}: {{queue: {q}, retry: {RETRIES[:-1]}, via: broker}}}}{chr(10)}" for q in QUEUES)}\
  m.*: {{queue: celery}}
celery:
  default_queue: celery
"""

# The docs' table (docs/celery.md), as the test expects it: how a task ends -> (where it lands, the x-exception type).
ROWS = {
    "returns": ("ran, acked", "-"),
    "raises (no retries left), with or without `acks_late`": ("dead-lettered", "RuntimeError"),
    "raises after `retry: {via: worker}` (or `autoretry_for`)": ("dead-lettered", "RuntimeError"),
    "raises after `retry: {via: broker}`": ("dead-lettered", "RuntimeError"),
    "soft time limit (`soft_time_limit`)": ("dead-lettered", "SoftTimeLimitExceeded"),
    "hard time limit (`time_limit`)": ("dead-lettered", "TimeLimitExceeded"),
    "pool process killed, with or without `acks_late`": ("dead-lettered", "WorkerLostError"),
    "pool process killed, `reject_on_worker_lost`": ("requeued once, then dead-lettered", "WorkerLostError"),
    "pool process killed, `retry_on_worker_lost`": ("dead-lettered", "WorkerLostError"),
    "raises `Reject(requeue=False)`": ("dead-lettered", "Reject"),
    "raises `Reject(requeue=True)`": ("requeued once, then dead-lettered", "Reject"),
    "raises `Ignore`": ("ran, acked", "-"),
    "raises `self.retry()` past its `max_retries`": ("dead-lettered", "MaxRetriesExceededError"),
    "`expires` passed while a worker held it": ("never run, acked", "-"),
    "`expires` passed while it waited in its queue": ("dead-lettered by the broker", "-"),
    "revoked before it ran": ("never run, acked", "-"),
    "worker warm shutdown (SIGTERM) mid-task": ("ran, acked", "-"),
    "worker cold shutdown (SIGQUIT) mid-task": ("back in its queue, runs on the next worker", "-"),
    "a foreign body that is not a JSON document": ("dead-lettered", "UndecodableBody"),
}
TWICE = ("requeued once, then dead-lettered",)


@dataclass(frozen=True)
class Case:
    """One way to end: the docs' table row it shows, the task and how it starts, and how often it runs."""

    row: str
    do: str
    task: str = "m.act"
    queue: str = "celery"  # where it runs, and so whose dead-letter queue it reaches
    options: dict[str, Any] = field(default_factory=dict)
    how: str = "task"  # a key of STARTS
    runs: int = 1

    @property
    def lands(self) -> str:
        return ROWS[self.row][0]

    @property
    def exception(self) -> str:
        return ROWS[self.row][1]


(RETURNS, RAISES, WORKER, BROKER, SOFT, HARD, KILLED, KILLED_REQUEUE, KILLED_RETRY) = list(ROWS)[:9]
REJECT, REJECT_REQUEUE, IGNORE, RETRY = list(ROWS)[9:13]
EXPIRED_HELD, EXPIRED_QUEUED, REVOKED, WARM, COLD, NOT_JSON = list(ROWS)[13:]
IN_FOREIGN = {"task": "m.foreign", "queue": "qtopic", "how": "foreign"}  # run_on qtopic, retry once
LIMITED = {**IN_FOREIGN, "task": "m.foreign_limited"}  # the same, with time limits (soft 1 s, hard 2 s)
COUNTDOWN = {"countdown": 1}
HELD = {"countdown": 2, "expires": 1}  # reaches the worker (or the delayed queues) at once, runs past `expires`

CASES = {
    "returns": Case(RETURNS, "ok"),
    "raises": Case(RAISES, "fail"),
    "raises-early-ack": Case(RAISES, "fail", task="m.early"),
    "worker-retries": Case(WORKER, "fail", task="m.wretry.celery", runs=2),
    "broker-retries": Case(BROKER, "fail", task="m.bretry.celery", runs=2),
    "soft-limit": Case(SOFT, "soft", options={"soft_time_limit": 0.5, "time_limit": 30}),
    "hard-limit": Case(HARD, "hard", options={"time_limit": 1}),
    "hard-limit-early-ack": Case(HARD, "hard", task="m.early", options={"time_limit": 1}),
    "killed": Case(KILLED, "kill"),
    "killed-early-ack": Case(KILLED, "kill", task="m.early"),
    "killed-reject-on-lost": Case(KILLED_REQUEUE, "kill", task="m.requeue_lost", runs=2),
    "killed-retry-on-lost-early-ack": Case(KILLED_RETRY, "kill", task="m.retry_lost_early", runs=2),
    "reject": Case(REJECT, "reject"),
    "reject-requeue": Case(REJECT_REQUEUE, "reject_requeue", runs=2),
    "ignore": Case(IGNORE, "ignore"),
    "retry-raised": Case(RETRY, "retry", runs=2),
    "expires-held-direct": Case(EXPIRED_HELD, "ok", options=HELD, runs=0),
    "expires-held-delayed": Case(EXPIRED_HELD, "ok", queue="qtopic", options=HELD, runs=0),
    "expires-queued": Case(EXPIRED_QUEUED, "ok", options={"expires": 1}, how="expire-queued", runs=0),
    "revoked": Case(REVOKED, "ok", how="revoke", runs=0),
    # started by a countdown or an ETA: classic and quorum queues, topic and direct exchanges
    **{f"countdown-broker-retries-{q}": Case(BROKER, "fail", f"m.bretry.{q}", q, COUNTDOWN, runs=2) for q in QUEUES},
    # an ETA a worker holds (classic, direct) and one that waits in celery_delayed_* (quorum, topic); an ETA
    # under a second away fails in Celery's publisher (native delayed delivery's countdown must be >= 1 s)
    **{f"eta-worker-retries-{q}": Case(WORKER, "fail", f"m.wretry.{q}", q, {"eta": 1.5}, runs=2) for q in QUEUES[::3]},
    "countdown-autoretry-qtopic": Case(WORKER, "fail", "m.autoretry", "qtopic", COUNTDOWN, runs=2),  # Celery's own
    "countdown-returns-ctopic": Case(RETURNS, "ok", queue="ctopic", options=COUNTDOWN),
    "countdown-hard-limit-qtopic": Case(HARD, "hard", queue="qtopic", options={"countdown": 1, "time_limit": 1}),
    "countdown-reject-qdirect": Case(REJECT, "reject", queue="qdirect", options=COUNTDOWN),
    # a foreign message's task (consume: foreign, run_on: qtopic, retry once after 1 s: through delayed delivery)
    "foreign-returns": Case(RETURNS, "ok", **IN_FOREIGN),
    "foreign-raises": Case(WORKER, "fail", runs=2, **IN_FOREIGN),
    "foreign-soft-limit": Case(SOFT, "soft", runs=2, **LIMITED),
    "foreign-hard-limit": Case(HARD, "hard", **LIMITED),
    "foreign-killed": Case(KILLED, "kill", **IN_FOREIGN),
    "foreign-reject": Case(REJECT, "reject", **IN_FOREIGN),
    "foreign-reject-requeue": Case(REJECT_REQUEUE, "reject_requeue", runs=2, **IN_FOREIGN),
    "foreign-ignore": Case(IGNORE, "ignore", **IN_FOREIGN),
    "foreign-retry-raised": Case(RETRY, "retry", runs=2, **IN_FOREIGN),
    "foreign-not-json": Case(NOT_JSON, "{not json", task="", queue="example", how="foreign-body", runs=0),
    # last: they stop the module's worker (cold: a new one takes over; warm: none is left)
    "cold-shutdown": Case(COLD, "hold", how="cold", runs=2),
    "warm-shutdown": Case(WARM, "hold", how="warm"),
}


@dataclass
class Matrix:
    folder: Path
    vhost: str
    worker: Worker
    app: Any


@pytest.fixture(scope="module")
def matrix(broker: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """One provisioned vhost and one prefork worker for the whole module."""
    folder = tmp_path_factory.mktemp("matrix")
    with fresh_vhost("matrix") as vhost:
        topology = folder / "topology.yaml"
        topology.write_text(textwrap.dedent(TOPOLOGY))
        env = {"TEST_VHOST": vhost}
        applied = CliRunner().invoke(main, ["apply", str(topology)], env=env)
        assert applied.exit_code == 0, applied.output
        rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(folder / "celeryconfig.py")], env=env)
        assert rendered.exit_code == 0, rendered.output
        worker = start_worker(folder, vhost, queues=CONSUMED, pool="prefork", app="matrix_app")
        try:
            yield Matrix(folder, vhost, worker, publisher(folder, vhost))
        finally:
            worker.stop()


def test_the_docs_table_is_the_matrix() -> None:
    """The docs' table says, row for row, what the cases below show; every row has a case."""
    assert docs_table_rows() == ROWS
    assert {case.row for case in CASES.values()} == set(ROWS)


def test_the_rendered_comment_on_dying_workers_says_what_the_matrix_shows(matrix: Matrix) -> None:
    config = (matrix.folder / "celeryconfig.py").read_text()
    comment, setting = config.split("task_reject_on_worker_lost = ")[0].rsplit("task_acks_on_timeout", 1)[1], "False"
    assert config.count(f"task_reject_on_worker_lost = {setting}\n") == 1 and "task_acks_late = True\n" in config
    assert "fails the task with WorkerLostError" in comment and "dead-letters it" in comment  # the killed rows
    assert "requeues it once, then dead-letters it" in comment  # the reject_on_worker_lost row
    assert "the broker gives it to the next worker" in comment  # the cold shutdown row
    assert ROWS[KILLED] == ("dead-lettered", "WorkerLostError") and ROWS[KILLED_REQUEUE][0] == TWICE[0]


def test_a_dead_letter_after_a_pool_process_was_replaced_is_published_once(matrix: Matrix) -> None:
    """The replaced process's after-fork cleanup shuts the socket it shares with the main process's producer."""
    for do in ("fail", "kill", "fail"):
        key = f"after-fork-{do}-{uuid.uuid4().hex[:6]}"
        matrix.app.send_task("m.act", args=[do, key])
        wait_for(lambda: counts(matrix.vhost, "celery.dead")[0] == 1, timeout=120)
        wait_for(lambda: not held(matrix, key), timeout=60)  # noqa: B023 - waited for before the next turn
        assert_settled(matrix, "celery")
        assert len(runs(matrix, key)) == 1  # dead-lettered at once, not requeued to run again
        ((body, headers),) = drain(matrix.vhost, "celery.dead")
        assert key.encode() in body and headers["x-exception"].startswith(("WorkerLostError", "RuntimeError"))
    assert "could not publish" not in matrix.worker.output()


def test_a_fuzzed_body_stream_never_stops_or_stalls_the_worker(matrix: Matrix) -> None:
    """Every body is handed to the task or dead-lettered with its reason, and a normal message behind them runs."""
    fuzzed = fuzzed_bodies(SEED)
    connection = pika.BlockingConnection(parameters(matrix.vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    for body, properties in fuzzed:
        channel.basic_publish("example", "com.example", body, properties)
    key = f"behind-{uuid.uuid4().hex[:6]}"
    channel.basic_publish("example", "com.example", json.dumps({"do": "ok", "key": key}).encode())
    connection.close()
    expected = [handed_over(body, properties) for body, properties in fuzzed]
    valid = sorted(digest for digest in expected if digest is not None)
    refused = sorted(body for (body, _), value in zip(fuzzed, expected, strict=True) if value is None)
    assert valid and refused  # the stream holds both kinds
    wait_for(lambda: runs(matrix, key), timeout=120)
    wait_for(lambda: len(runs(matrix, "fuzz")) >= len(valid), timeout=120)
    wait_for(lambda: counts(matrix.vhost, "example.dead")[0] >= len(refused), timeout=120)
    assert_settled(matrix, "example", len(refused))
    letters = drain(matrix.vhost, "example.dead")
    assert sorted(body for body, _ in letters) == refused, f"seed {SEED}"
    for body, headers in letters:  # a refused task publish names the broker's refusal, any other body its flaw
        reason = "PreconditionFailed: " if too_large(body) else "UndecodableBody: "
        assert headers["x-exception"].startswith(reason), headers["x-exception"]
    assert all(headers["x-failed-queue"] == "example" for _, headers in letters)
    assert sorted(record["digest"] for record in runs(matrix, "fuzz")) == valid, f"seed {SEED}"
    assert counts(matrix.vhost, "qtopic.dead")[0] == 0 and matrix.worker.process.poll() is None


@pytest.mark.parametrize("name", list(CASES))
def test_each_way_a_task_ends_lands_once(matrix: Matrix, name: str) -> None:
    case = CASES[name]
    key = f"{name}-{uuid.uuid4().hex[:6]}"
    task_id = STARTS[case.how](matrix, case, key)
    if case.lands in ("dead-lettered", "dead-lettered by the broker", *TWICE):
        wait_for(lambda: counts(matrix.vhost, f"{case.queue}.dead")[0] >= 1, timeout=120)
    elif case.lands == "never run, acked":  # the worker says it discarded it
        wait_for(lambda: f"Discarding revoked task: {case.task}[{task_id}]" in matrix.worker.output(), timeout=120)
    else:
        wait_for(lambda: len(runs(matrix, key)) >= case.runs, timeout=120)
    if matrix.worker.process.poll() is None:  # a stopped worker holds nothing: its messages are back, counted
        delayed = bool({"countdown", "eta"} & set(case.options)) or case.row in (WORKER, RETRY)  # an ETA may wait
        wait_for(lambda: not held(matrix, key, scheduled=delayed), timeout=60)
    dead = case.lands.startswith("dead-lettered") or case.lands in TWICE
    assert_settled(matrix, case.queue if dead else None)
    assert len(runs(matrix, key)) == case.runs, runs(matrix, key)
    letters = drain(matrix.vhost, f"{case.queue}.dead")
    assert len(letters) == dead, letters
    for body, headers in letters:
        assert key.encode() in body
        assert_headers(case, headers)
    assert (matrix.worker.process.poll() is None) == (case.how != "warm")
    assert "no retry queue" not in matrix.worker.output() and "could not publish" not in matrix.worker.output()


def assert_headers(case: Case, headers: dict[str, Any]) -> None:
    """A dead letter says why in the headers `dlq` reads; the broker's own says only `x-death`."""
    if case.lands == "dead-lettered by the broker":
        assert "x-exception" not in headers and headers["x-death"][0]["reason"] == "expired"
        return
    assert headers["x-exception"].split(":")[0] == case.exception, headers["x-exception"]
    assert headers["x-failed-queue"] == case.queue and headers["x-failed-at"]
    if case.how == "foreign-body":  # no task ran: nothing but the reason and the queue it came from
        assert "x-failed-task" not in headers
        return
    assert headers["x-failed-task"] == case.task and "x-exception-traceback" in headers
    if case.how == "foreign":
        assert headers["x-foreign-queue"] == ("limited" if case.task == "m.foreign_limited" else "example")


def send_task(matrix: Matrix, case: Case, key: str) -> str:
    options = dict(case.options)
    if "eta" in options:
        options["eta"] = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=options["eta"])
    task_id = str(uuid.uuid4())
    matrix.app.send_task(case.task, args=[case.do, key], queue=case.queue, task_id=task_id, **options)
    return task_id


def send_foreign(matrix: Matrix, case: Case, key: str) -> None:
    body = json.dumps({"do": case.do, "key": key}).encode()
    publish(matrix, "com.limited" if case.task == "m.foreign_limited" else "com.example", body)


def send_foreign_body(matrix: Matrix, case: Case, key: str) -> None:
    publish(matrix, "com.example", f"{case.do} {key}".encode())


def publish(matrix: Matrix, routing_key: str, body: bytes) -> None:
    connection = pika.BlockingConnection(parameters(matrix.vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("example", routing_key, body, pika.BasicProperties(content_type="application/json"))
    connection.close()


def revoke_then_send(matrix: Matrix, case: Case, key: str) -> str:
    task_id = str(uuid.uuid4())
    replies = matrix.app.control.revoke(task_id, reply=True, limit=1, timeout=60)
    assert len(replies) == 1, replies
    matrix.app.send_task(case.task, args=[case.do, key], task_id=task_id)
    return task_id


def expire_while_queued(matrix: Matrix, case: Case, key: str) -> None:
    """Both pool processes busy: the task waits in its queue past `expires`, and the broker dead-letters it."""
    holders = [f"{key}-holder-{n}" for n in range(2)]
    for holder in holders:
        (matrix.folder / f"hold-{holder}").touch()
        matrix.app.send_task("m.act", args=["hold", holder])
    wait_for(lambda: all(runs(matrix, holder) for holder in holders), timeout=60)
    send_task(matrix, case, key)
    wait_for(lambda: counts(matrix.vhost, f"{case.queue}.dead")[0] == 1, timeout=60)
    for holder in holders:
        (matrix.folder / f"hold-{holder}").unlink()
    wait_for(lambda: not any(held(matrix, holder, scheduled=False) for holder in holders), timeout=60)


def cold_shutdown(matrix: Matrix, case: Case, key: str) -> None:
    """SIGQUIT while the task runs: its message is back in its queue, once; the next worker runs it again."""
    hold = matrix.folder / f"hold-{key}"
    hold.touch()
    send_task(matrix, case, key)
    wait_for(lambda: runs(matrix, key), timeout=60)
    matrix.worker.stop(signal.SIGQUIT)
    # The worker's connections are closed: what it held unacked is ready again, and only this task was held.
    assert {q: n for q, n in ready_counts(matrix.vhost, list(CONSUMED)).items() if n} == {case.queue: 1}
    hold.unlink()
    matrix.worker = start_worker(matrix.folder, matrix.vhost, queues=CONSUMED, pool="prefork", app="matrix_app")


def warm_shutdown(matrix: Matrix, case: Case, key: str) -> None:
    """SIGTERM while the task runs: the worker waits for it, acks it, and exits."""
    hold = matrix.folder / f"hold-{key}"
    hold.touch()
    send_task(matrix, case, key)
    wait_for(lambda: runs(matrix, key), timeout=60)
    matrix.worker.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "Warm shutdown" in matrix.worker.output())
    hold.unlink()
    assert matrix.worker.process.wait(timeout=120) == 0
    assert all(counts(matrix.vhost, queue)[1] == 0 for queue in CONSUMED)  # gone: its unacked would be ready now


STARTS: dict[str, Callable[[Matrix, Case, str], str | None]] = {
    "task": send_task,
    "foreign": send_foreign,
    "foreign-body": send_foreign_body,
    "revoke": revoke_then_send,
    "expire-queued": expire_while_queued,
    "cold": cold_shutdown,
    "warm": warm_shutdown,
}


def runs(matrix: Matrix, key: str) -> list[dict[str, Any]]:
    return [record for record in matrix.worker.records() if record.get("key") == key]


def held(matrix: Matrix, key: str, scheduled: bool = True) -> bool:
    """Whether the worker holds a request of ``key``: running, reserved, or (``scheduled``) waiting for its ETA."""
    inspect = matrix.app.control.inspect(timeout=30, limit=1)
    found = [inspect.active(), inspect.reserved(), inspect.scheduled() if scheduled else None]
    return key in repr(found)


def assert_settled(matrix: Matrix, dead_lettered_from: str | None, letters: int = 1) -> None:
    """No message waits in a work or retry queue, and only the case's own dead-letter queue holds anything."""
    retry_queues = [f"{queue}.retry.1s" for queue in QUEUES]
    ready = ready_counts(matrix.vhost, [*CONSUMED, *retry_queues, *(f"{queue}.dead" for queue in CONSUMED)])
    waiting = {name: count for name, count in ready.items() if not name.endswith(".dead") and count}
    assert waiting == {}, waiting
    dead = {name: count for name, count in ready.items() if name.endswith(".dead") and count}
    assert dead in ({}, {f"{dead_lettered_from}.dead": letters}), dead


def ready_counts(vhost: str, queues: list[str]) -> dict[str, int]:
    """Ready messages of each queue, by passive declares on one connection."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        channel = connection.channel()
        return {name: channel.queue_declare(name, passive=True).method.message_count for name in queues}
    finally:
        connection.close()


def docs_table_rows() -> dict[str, tuple[str, str]]:
    """The table of docs/celery.md under TABLE_HEADING: first cell -> (second cell, third cell)."""
    text = CELERY_PAGE.read_text(encoding="utf-8")
    section = text[text.index(TABLE_HEADING) :]
    rows = {}
    for line in section.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and not re.fullmatch(r"[-\s|:]+", line) and cells[0] != "how the task ends":
            rows[cells[0]] = (cells[1], cells[2])
    return rows
