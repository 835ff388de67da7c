"""The pure rooms of the pipeline never load a broker client: diffing and planning run without pika or requests."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE_MODULES = [
    "provisioner.diff",
    "provisioner.drift",
    "provisioner.plan",
    "provisioner.live_state",
    "provisioner.kinds",
    "provisioner.migration.steps",
    "provisioner.topology.model",
    "provisioner.topology.checks",
    "provisioner.saved_plan",
    "provisioner.formats.markdown",
    "provisioner.formats.github",
    "provisioner.graph.render",
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_loads_no_broker_client(module: str) -> None:
    check = f"import {module}, sys; loaded = {{'pika', 'requests'}} & set(sys.modules); assert not loaded, loaded"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_check_sees_a_broker_client() -> None:
    """The same check fails for a module that does talk to the broker, so it can fail at all."""
    check = "import provisioner.broker.live, sys; assert 'requests' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode != 0
