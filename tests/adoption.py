"""Adoption end to end: a Celery app on a broker -> export -> validate, apply, plan -> render -> a real worker.

An app module follows one convention (as an adopting project changes its own):
with ``PROVISION_RENDERED`` set it takes its settings from the rendered module
and calls ``provisioner.celery.install(app)``; otherwise it keeps its own
settings. Every task appends its name to the file ``OBSERVED`` names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import yaml
from click.testing import CliRunner
from rabbit import amqp_url, api, parameters, wait_for

from provisioner.cli import main
from provisioner.export.emit import scalar


@dataclass(frozen=True)
class Adopted:
    """What each step gave, for the closing note and for the asserts."""

    exported: dict[str, Any]
    export_stderr: str
    rendered: str
    ran: dict[str, int]


def cli(*args: str) -> Any:
    """The CLI in this process, as the other export tests run it (validate, apply, plan, render)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


CLIENT = Path(__file__).parent / "adoption_client.py"


def client(folder: Path, module: str, action: str, vhost: str) -> list[str]:
    """tests/adoption_client.py in its own process: declare the app's queues or publish its tasks; its task names."""
    env = {**os.environ, "PYTHONPATH": str(folder), "CELERY_BROKER_URL": amqp_url(vhost)}
    command = [sys.executable, str(CLIENT), action, module]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{action}: {done.stderr[-3000:]}"
    return list(json.loads(done.stdout.splitlines()[-1]))


def export(folder: Path, module: str, vhost: str, topology: Path) -> subprocess.CompletedProcess[str]:
    """``provision export`` in its own process, from the app's folder, as a user runs it."""
    command = [sys.executable, "-m", "provisioner.cli", "export", "--vhost", vhost]
    command += ["--celery-app", f"{module}:app", "-o", str(topology)]
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)


def adopt(
    folder: Path,
    module: str,
    source_vhost: str,
    target_vhost: str,
    declare: bool = True,
    names: list[str] | None = None,
) -> Adopted:
    """Export the app's vhost, apply it into ``target_vhost``, render, and run every task through a real worker.

    ``declare``: the source vhost holds the app's queues as its workers declared them (else it is empty).
    """
    if declare:
        client(folder, module, "declare", source_vhost)
    topology = folder / "topology.yaml"
    exported = export(folder, module, source_vhost, topology)
    assert exported.returncode == 0, exported.stderr
    assert "problem:" not in exported.stderr, exported.stderr
    text = re.sub(r"(?m)^vhost: .*$", f"vhost: {scalar(target_vhost)}", topology.read_text(), count=1)
    topology.write_text(text)
    for step in (("validate",), ("apply",), ("plan", "--detailed-exitcode")):
        result = cli(*step, str(topology))
        assert result.exit_code == 0, f"{step}: {result.output}\n{text}"
    rendered = cli("render", str(topology), "-o", str(folder / "celeryconfig.py"))
    assert rendered.exit_code == 0, rendered.output
    ran = run_every_task(folder, module, target_vhost, names)
    return Adopted(yaml.safe_load(text), exported.stderr, (folder / "celeryconfig.py").read_text(), ran)


def run_every_task(folder: Path, module: str, vhost: str, expected: list[str] | None) -> dict[str, int]:
    """Send each task once from the original app and once from the rendered config; one worker runs them all."""
    observed = folder / "observed.txt"
    names = client(folder, module, "publish", vhost)
    assert expected is None or names == sorted(expected), (names, expected)
    worker = start(folder, module, vhost, observed)
    try:
        wait_for(lambda: sorted(_lines(observed)) == sorted(names * 2), timeout=120)
        # and nothing waits anywhere (a message routed where no worker consumes stays ready)
        queues = queues_of(vhost)
        wait_for(lambda: not any(counts(vhost, queue)[0] for queue in queues), timeout=30)
    except AssertionError:
        left = {queue: counts(vhost, queue)[0] for queue in queues_of(vhost)}
        ran = sorted(_lines(observed))
        raise AssertionError(f"ran {ran} of {names}, ready: {left}:\n{worker.log()[-3000:]}") from None
    finally:
        worker.stop()
    return {name: _lines(observed).count(name) for name in names}


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    logfile: Path

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self) -> None:
        """Killed: every task has run and nothing is ready by now (a warm shutdown takes 10 s here)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start(folder: Path, module: str, vhost: str, observed: Path) -> WorkerProcess:
    """``celery worker`` of the app module on the rendered config (solo pool, nothing but consuming)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(folder),
        "CELERY_BROKER_URL": amqp_url(vhost),
        "PROVISION_RENDERED": "celeryconfig",
        "OBSERVED": str(observed),
    }
    command = [sys.executable, "-m", "celery", "-A", module, "worker", "-P", "solo", "-l", "INFO"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    logfile = folder / "worker.log"
    with open(logfile, "wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    return WorkerProcess(process, logfile)


def queues_of(vhost: str) -> list[str]:
    """The vhost's queues but Celery's own transient ones (pidbox, events), by the management API's list."""
    listed = api("GET", f"queues/{quote(vhost, safe='')}?columns=name,exclusive,auto_delete").json()
    return sorted(q["name"] for q in listed if not q.get("exclusive") and not q.get("auto_delete"))


def counts(vhost: str, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) over AMQP (passive declare)."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        ok = connection.channel().queue_declare(queue, passive=True).method
        return int(ok.message_count), int(ok.consumer_count)
    finally:
        connection.close()


def summary(adopted: Adopted) -> str:
    """One line for the closing note."""
    return json.dumps({"tasks": adopted.exported.get("tasks", {}), "ran": adopted.ran}, sort_keys=True)
