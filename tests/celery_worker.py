"""A real `celery worker` subprocess on a rendered config, and ways to look into its queues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pika
from celery import Celery
from rabbit import amqp_url, parameters, wait_for

APP_DIR = Path(__file__).parent / "celery_app"


class Worker:
    """A `celery worker` subprocess (solo pool unless told) on the rendered config."""

    def __init__(
        self,
        folder: Path,
        vhost: str,
        consume: tuple[str, ...] | None = None,
        pool: str = "solo",
        app: str = "e2e_app",
        concurrency: int = 2,
    ) -> None:
        self.observed = folder / "observed.jsonl"
        self.log = folder / f"worker-{uuid.uuid4().hex[:8]}.log"  # one per worker started here
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(folder), str(APP_DIR)]),
            "CELERY_BROKER_URL": amqp_url(vhost),
            "E2E_OBSERVED": str(self.observed),
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-l",
            "INFO",
        ]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        if consume is not None:
            command += ["-Q", ",".join(consume)]  # the other task_queues are still Celery's (bound, routed)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)

    def records(self) -> list[dict]:
        if not self.observed.exists():
            return []
        return [json.loads(line) for line in self.observed.read_text().splitlines()]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop the worker: SIGTERM is Celery's warm shutdown, SIGQUIT its cold one."""
        if self.process.poll() is None:
            self.process.send_signal(how)
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


def start_worker(
    folder: Path,
    vhost: str,
    queues: tuple[str, ...] = ("celery", "example"),
    only: bool = False,
    pool: str = "solo",
    app: str = "e2e_app",
) -> Worker:
    """Start a worker and wait until it consumes every one of ``queues`` (with ``only``, no other) and is ready."""
    worker = Worker(folder, vhost, consume=queues if only else None, pool=pool, app=app)
    try:
        wait_for(lambda: all(counts(vhost, queue)[1] == 1 for queue in queues), timeout=60)
        wait_for(lambda: " ready." in worker.output(), timeout=60)  # every consumer bootstep has started
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
        app.conf.broker_url = amqp_url(vhost)
        app.conf.task_queues  # noqa: B018 - load the module now, while it is on the path
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("celeryconfig", None)
    return app
