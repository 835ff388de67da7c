"""The library API: the docs' example (docs/library.md) runs as written, and the package stays cheap to import."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import provisioner
from provisioner.errors import TopologyInvalid

ROOT = Path(__file__).resolve().parent.parent.parent


def docs_example() -> str:
    """The first Python block of the "Use it from Python" page."""
    section = (ROOT / "docs" / "library.md").read_text().split("# Use it from Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_docs_example_converges_a_fresh_vhost(vhost_name: str) -> None:
    """Run as a user would: its own process, the broker from the environment, the vhost it names."""
    environment = {**os.environ, "VHOST": vhost_name}
    result = subprocess.run(
        [sys.executable, "-c", docs_example()], capture_output=True, text=True, env=environment, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "7\n"
    broker = provisioner.connect()
    topology = provisioner.parse_topology(docs_example_topology(vhost_name))
    assert provisioner.make_plan(topology, broker).is_empty
    assert sorted(q.name for q in provisioner.read_live(topology, broker)[vhost_name].topology.queues) == [
        "orders.paid",
        "orders.paid.dead",
    ]


def docs_example_topology(vhost: str) -> str:
    text = docs_example().split('"""')[1]
    return text.replace("${VHOST}", vhost)


def test_every_documented_name_is_there_and_typed() -> None:
    for name in provisioner.__all__:
        assert getattr(provisioner, name) is not None
    assert (ROOT / "provisioner" / "py.typed").exists()
    with pytest.raises(AttributeError):
        provisioner.no_such_entry_point  # noqa: B018


def test_an_invalid_topology_raises_typed_problems() -> None:
    with pytest.raises(TopologyInvalid) as raised:
        provisioner.parse_topology("version: 1\nqueues:\n  q: {durable: maybe}\n")
    assert [p.line for p in raised.value.problems] == [3]


def test_render_gives_the_same_text_as_the_cli(tmp_path: Path) -> None:
    seed = ROOT / "topologies" / "seed.yaml"
    out = tmp_path / "celeryconfig.py"
    subprocess.run([sys.executable, "-m", "provisioner.cli", "render", str(seed), "-o", str(out)], check=True)
    from provisioner.celery.render import source_names

    text = provisioner.render_config(provisioner.load_topology(seed), sources=source_names([str(seed)], str(out)))
    assert text == out.read_text()


def test_importing_the_package_loads_no_client_library() -> None:
    script = "import sys, provisioner; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert not {"pika", "requests", "yaml", "celery", "jsonschema"} & set(eval(loaded))


def test_an_error_keeps_its_cause_for_the_library_user(tmp_path: Path) -> None:
    broken = tmp_path / "definitions.json"
    broken.write_text("{not json")
    with pytest.raises(provisioner.ProvisionerError) as raised:
        provisioner.export_topology(definitions_file=str(broken))
    assert str(raised.value).startswith(f"definitions file {broken} is not JSON")  # the CLI's one line
    assert isinstance(raised.value.__cause__, ValueError)  # and what a program may want to look into
