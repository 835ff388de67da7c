"""A broker that does not answer: the retries of one request, then one error line, never each parallel read's too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from provision_cli import PROVISION

TOPOLOGY = "version: 1\nvhost: v\nqueues:\n  a: {}\n"


def test_an_unreachable_management_api_is_one_requests_retries_and_one_error_line(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text(TOPOLOGY)
    env = {**os.environ, "PROVISION_MANAGEMENT_URL": "http://127.0.0.1:1", "PROVISION_AMQP_URL": "amqp://127.0.0.1:1"}
    done = subprocess.run(
        [PROVISION, "plan", "--retry-seconds", "2", str(file)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[-1].startswith("error: cannot reach the management API at 127.0.0.1:1"), done.stderr
    retries = lines[:-1]
    assert retries, done.stderr  # it did wait: --retry-seconds 2 is room for a few tries
    assert all(line.startswith("GET /api/overview failed") and "retrying in" in line for line in retries), retries
