"""Every module imports on its own, first, in a fresh interpreter: no import cycle hides behind an import order."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import provisioner

MODULES = sorted(m.name for m in pkgutil.walk_packages(provisioner.__path__, "provisioner."))


def test_the_package_has_its_pipeline_modules() -> None:
    assert {"provisioner.cli", "provisioner.migration.amqp", "provisioner.celery.runtime"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
