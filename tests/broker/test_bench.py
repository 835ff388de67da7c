"""The benchmark script runs end to end at a tiny size and prints its table (a smoke test: no time is asserted)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from rabbit import api, version

ROOT = Path(__file__).resolve().parent.parent.parent
BIG = ("--big-mib", "0.01")  # the big-file row, at a size that costs nothing


@pytest.mark.broker
def test_bench_prints_the_table_and_leaves_no_vhost() -> None:
    prefix = f"test-bench-{uuid.uuid4().hex[:6]}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", "20", "--rounds", "1", "--prefix", prefix, *BIG],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"RabbitMQ {version()[0]}." in out and "cores" in out and "Python 3." in out
    assert "N = 20 queues (101 objects)" in out
    for row in ("provision --version", "validate", "render", "apply (fresh)", "import POST /api/definitions"):
        assert f"\n{row} " in out, row
    for row in ("plan (no-op)", "apply (no-op)", "GET /api/definitions", "per-object GETs"):
        assert f"\n{row} " in out, row
    for row in ("floor: a process, one GET", "floor: dlq list"):  # bench/floor.py, in the same round
        assert f"\n{row} " in out, row
    assert "(against bench/floor.py) dlq list / floor: dlq list (N=20)" in out
    assert "plan (no-op)           yaml=" in out and " read=" in out  # the phases of a whole process
    assert "validate of one 0.01 MiB file" in out and "peak" in out
    left = {v["name"] for v in api("GET", "vhosts").json() if v["name"].startswith(prefix)}
    assert not left, "the benchmark deletes its vhosts"
