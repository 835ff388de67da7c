"""The rendered celeryconfig survives the repository's formatters and linters: `render --check` stays fresh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import main

REPO = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent

# A topology whose names and values make formatters want to change things: long lines, quotes, nesting.
AWKWARD = """\
version: 1
vhost: "quoted 'vhost' \\"here\\""
exchanges:
  "it's.a.very.long.exchange.name.that.pushes.every.line.past.any.formatter.limit.of.eighty.eight": {type: topic}
queues:
  "q\\"with'quotes":
    type: quorum
    max_length: 1000
    dead_letter: true
    bindings:
      - exchange: "it's.a.very.long.exchange.name.that.pushes.every.line.past.any.formatter.limit.of.eighty.eight"
        routing_key: "a.#"
tasks:
  "app.tasks.*": {queue: "q\\"with'quotes", retry: {max_retries: 3, delay: 2, backoff: true, via: broker}}
celery: {default_queue: "q\\"with'quotes"}
"""


def _tool(name: str) -> str:
    found = BIN / name
    assert found.exists(), f"{name} is a test extra: pip install -e '.[test]'"
    return str(found)


def _render(tmp_path: Path, topology: Path) -> Path:
    output = tmp_path / "celeryconfig.py"
    result = CliRunner().invoke(main, ["render", str(topology), "-o", str(output)])
    assert result.exit_code == 0, result.output
    return output


def _check(topology: Path, output: Path) -> str:
    result = CliRunner().invoke(main, ["render", "--check", str(topology), "-o", str(output)])
    assert result.exit_code == 0, result.output
    return result.output


FORMATTERS = {
    "ruff format, project config": lambda path: [_tool("ruff"), "format", str(path)],
    "ruff format, defaults": lambda path: [_tool("ruff"), "format", "--isolated", str(path)],
    "black": lambda path: [_tool("black"), "-q", str(path)],
    "black, short lines": lambda path: [_tool("black"), "-q", "-l", "40", str(path)],
}


@pytest.mark.parametrize("topology", ["shop", "seed", "awkward"])
@pytest.mark.parametrize("formatter", sorted(FORMATTERS))
def test_formatters_leave_the_rendered_file_fresh(tmp_path: Path, topology: str, formatter: str) -> None:
    source = tmp_path / "awkward.yaml" if topology == "awkward" else REPO / "topologies" / f"{topology}.yaml"
    if topology == "awkward":
        source.write_text(AWKWARD)
    output = _render(tmp_path, source)
    before = output.read_text()
    subprocess.run(FORMATTERS[formatter](output), check=True, cwd=REPO, capture_output=True)
    assert output.read_text() == before
    assert _check(source, output).startswith("fresh: ")


@pytest.mark.parametrize("topology", ["shop", "awkward"])
def test_linters_pass_the_rendered_file(tmp_path: Path, topology: str) -> None:
    source = tmp_path / "awkward.yaml" if topology == "awkward" else REPO / "topologies" / f"{topology}.yaml"
    if topology == "awkward":
        source.write_text(AWKWARD)
    output = _render(tmp_path, source)
    for config in (["--config", str(REPO / "pyproject.toml")], ["--isolated"]):
        # every rule ruff has, except the one that asks a blanket noqa to name its rules (the file is generated)
        command = [_tool("ruff"), "check", *config, "--select", "ALL", "--ignore", "PGH004", str(output)]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    fixed = subprocess.run([_tool("ruff"), "check", "--isolated", "--fix", "--select", "ALL", str(output)], cwd=REPO)
    assert fixed.returncode in (0, 1)
    assert _check(source, output).startswith("fresh: ")  # --fix changed nothing either


def test_the_markers_are_what_keeps_formatters_away(tmp_path: Path) -> None:
    """Without its markers the same file is reformatted: the test above would see it."""
    output = _render(tmp_path, REPO / "topologies" / "shop.yaml")
    text = output.read_text()
    for marker in ("# fmt: off", "# isort: skip_file", "# ruff: noqa"):
        assert text.count(f"\n{marker}\n") == 1
    bare = tmp_path / "bare.py"
    bare.write_text("\n".join(line for line in text.split("\n") if line not in ("# fmt: off", "# ruff: noqa")))
    subprocess.run([_tool("ruff"), "format", "--isolated", str(bare)], check=True, capture_output=True)
    assert "# fmt" not in bare.read_text() and bare.read_text() != text
