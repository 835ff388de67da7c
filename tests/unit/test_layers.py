"""The layers of pyproject.toml's import contracts hold, every module is in one layer, and a forbidden import fails.

lint-imports (import-linter) reads every import: at module level, inside a
function and under ``TYPE_CHECKING`` (``exclude_type_checking_imports = false``).
Each case below copies the package, adds one forbidden import and shows that
lint-imports fails on the copy, naming the contract and the line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # import-linter needs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert config["exclude_type_checking_imports"] is False  # an import under TYPE_CHECKING must count
    contracts: list[dict[str, Any]] = config["contracts"]
    return contracts


def _layers() -> list[list[str]]:
    """The layers bottom up: each boundary contract's sources, then the top layer (the last one's forbidden)."""
    boundaries = [c for c in _contracts() if c["id"].startswith("layer-")]
    return [c["source_modules"] for c in boundaries] + [boundaries[-1]["forbidden_modules"]]


def _matches(expression: str, module: str) -> bool:
    return re.fullmatch(re.escape(expression).replace(r"\*", r"[^.]+"), module) is not None


def _modules() -> list[str]:
    found = []
    for path in sorted((ROOT / "provisioner").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_module_is_in_exactly_one_layer() -> None:
    layers = _layers()
    for module in _modules():
        homes = [index for index, layer in enumerate(layers) for e in layer if _matches(e, module)]
        assert len(homes) == 1, f"{module} is in layers {homes}: add it to one layer in pyproject.toml"


def test_each_boundary_forbids_every_layer_above_it() -> None:
    layers = _layers()
    boundaries = [c for c in _contracts() if c["id"].startswith("layer-")]
    for index, contract in enumerate(boundaries):
        above = [module for layer in layers[index + 1 :] for module in layer]
        assert sorted(contract["forbidden_modules"]) == sorted(above), contract["id"]
        assert contract["as_packages"] is False and not contract.get("allow_indirect_imports")
    pure = next(c for c in _contracts() if c["id"] == "pure-no-io")
    assert sorted(pure["source_modules"]) == sorted(m for layer in layers[:3] for m in layer)
    assert set(pure["forbidden_modules"]) == {"pika", "requests", "celery"}


def _lint(tmp_path: Path, module: str, text: str, where: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the package whose ``module`` has ``text`` added ``where``."""
    shutil.copytree(ROOT / "provisioner", tmp_path / "provisioner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / (module.replace(".", "/") + ".py")
    source = path.read_text(encoding="utf-8")
    anchor = "from __future__ import annotations\n"
    path.write_text(source.replace(anchor, anchor + text, 1) if where == "top" else source + text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the copy, ahead of the installed package
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=tmp_path, env=env, capture_output=True, text=True
    )


FORBIDDEN = {
    "module level": ("provisioner.topology.model", "import provisioner.apply\n", "top", "layer-1-model"),
    "inside a function": (
        "provisioner.kinds.queue",
        "\n\ndef _sneak() -> None:\n    from provisioner.broker.management import Management  # noqa\n",
        "end",
        "layer-2-vocabulary",
    ),
    "under TYPE_CHECKING": (
        "provisioner.diff",
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from provisioner.executor import Executor\n",
        "top",
        "layer-3-pure",
    ),
    "a broker client in a pure room": ("provisioner.drift", "import requests\n", "top", "pure-no-io"),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
def test_a_forbidden_import_fails_lint_imports(case: str, tmp_path: Path) -> None:
    module, text, where, contract = FORBIDDEN[case]
    result = _lint(tmp_path, module, text, where)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    name = next(c["name"] for c in _contracts() if c["id"] == contract)
    words = r"\s+".join(re.escape(word) for word in f"{name} BROKEN".split())  # the report wraps long names
    assert re.search(words, output), output[-3000:]
    assert f"{module} -> " in output, output[-3000:]  # the added line itself, not another path
