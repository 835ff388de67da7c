"""The `provision` process as the console script runs it: output whole, exit status kept, no freeing at the end."""

from __future__ import annotations

import subprocess
from pathlib import Path

from provision_cli import PROVISION

from provisioner import retain
from provisioner.topology import load


def topology(tmp_path: Path, queues: int) -> Path:
    file = tmp_path / "t.yaml"
    lines = ["version: 1", "vhost: v", "queues:"]
    lines += [f"  q{index:05d}: {{dead_letter: true}}" for index in range(queues)]
    file.write_text("\n".join(lines) + "\n")
    return file


def test_its_output_is_whole_and_its_status_kept(tmp_path: Path) -> None:
    file = topology(tmp_path, 3000)
    rendered = subprocess.run([PROVISION, "render", str(file), "-o", "-"], capture_output=True, text=True)
    assert rendered.returncode == 0
    assert len(rendered.stdout) > 100_000  # more than a pipe holds: the end must still arrive
    assert "'q02999': ['q02999.dead'" in rendered.stdout and rendered.stdout.endswith("provisioner_retry_queues = {}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nqueues:\n  q: {durable: maybe}\n")
    refused = subprocess.run([PROVISION, "validate", str(bad)], capture_output=True, text=True)
    assert refused.returncode == 1 and "bad.yaml:3:" in refused.stderr
    missing = subprocess.run([PROVISION, "no-such-command"], capture_output=True, text=True)
    assert missing.returncode == 1 and "No such command" in missing.stderr  # 2 is drift's: docs/exit-codes.md


def test_a_usage_error_is_one_line_exiting_1_never_drifts_2(tmp_path: Path) -> None:
    """A CI drift job with a mistyped option must fail, not report drift; one line, as every other error."""
    file = topology(tmp_path, 1)
    for argv, words in (
        (["drift", "--no-such-option", str(file)], "No such option '--no-such-option'"),
        (["validate"], "Missing argument 'FILES...'"),
        (["plan", "--migrate", str(file)], "--migrate and --force go with -o PLAN"),
        (["render", "--check", "--format", "nope", str(file)], "--format"),
    ):
        done = subprocess.run([PROVISION, *argv], capture_output=True, text=True)
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and words in done.stderr, done.stderr
        assert "internal error" not in done.stderr and done.stdout == ""


def test_a_reader_that_stops_reading_is_no_error(tmp_path: Path) -> None:
    file = topology(tmp_path, 3000)
    process = subprocess.Popen(
        [PROVISION, "render", str(file), "-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # more than a pipe holds is still to come: the next write meets a closed pipe
    errors = process.stderr.read().decode()
    assert process.wait() == 1
    assert errors == "", errors  # neither "internal error" nor a traceback


def test_a_library_caller_keeps_nothing(tmp_path: Path) -> None:
    load([topology(tmp_path, 3)])
    assert retain._kept is None
