"""A command imports only what it needs: the interpreter's start is most of a small command's time.

Checked by the modules loaded in a fresh interpreter, never by a clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rabbit import AMQP_URL, MANAGEMENT_URL

ROOT = Path(__file__).resolve().parent.parent.parent
HEAVY = ("pika", "requests", "celery", "kombu", "jsonschema", "yaml")

SCRIPT = """
import sys
from provisioner.cli import main
try:
    main(sys.argv[1:], prog_name="provision")
except SystemExit:
    pass
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_after(*arguments: str, env: dict[str, str] | None = None) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *arguments], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.split("\n")[-2].split())


def test_version_loads_nothing_heavy() -> None:
    assert not loaded_after("--version") & set(HEAVY)


@pytest.mark.parametrize("command", [["validate"], ["render", "-o", "-"]])
def test_validate_and_render_of_a_valid_file_skip_jsonschema_and_the_broker_clients(command: list[str]) -> None:
    loaded = loaded_after(*command, str(ROOT / "topologies" / "shop.yaml"))
    assert "yaml" in loaded  # it did load the file
    assert not loaded & {"pika", "requests", "celery", "kombu", "jsonschema"}


def test_a_plan_that_needs_no_message_counts_loads_no_amqp_client(tmp_path: Path, vhost_name: str) -> None:
    file = tmp_path / "topology.yaml"
    file.write_text(f"version: 1\nvhost: {vhost_name}\nqueues:\n  work: {{dead_letter: true}}\n")
    environment = {**os.environ, "PROVISION_AMQP_URL": AMQP_URL, "PROVISION_MANAGEMENT_URL": MANAGEMENT_URL}
    applied = subprocess.run(
        [sys.executable, "-m", "provisioner.cli", "apply", str(file)], capture_output=True, text=True, env=environment
    )
    assert applied.returncode == 0, applied.stderr[-2000:]
    loaded = loaded_after("plan", "--detailed-exitcode", str(file), env=environment)
    assert "requests" in loaded  # it did read the broker
    assert not loaded & {"pika", "celery", "kombu", "jsonschema"}


def test_an_invalid_file_still_gets_jsonschema_words(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("version: 1\nqueues:\n  q: {durable: maybe}\n")
    result = subprocess.run(
        [sys.executable, "-m", "provisioner.cli", "validate", str(file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "bad.yaml:3:16: durable must be boolean, not a string (at queues.q.durable)" in result.stderr
