"""Celery is an extra (provisioner[celery]): planning, validating and exporting work without it, and the two
features that need it say so in one line, without a traceback.

Each case runs in a fresh interpreter in which ``import celery`` fails, as on a deploy host without the extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEFINITIONS = ROOT / "tests" / "fixtures" / "export" / "definitions.json"
WITHOUT_CELERY = "import sys; sys.modules['celery'] = None  # as if it were not installed\n"
INSTALL = (
    "install the 'celery' extra where provisioner comes from "
    "(pip install -e '.[celery]' in a clone, 'provisioner[celery] @ git+URL' otherwise)"
)


def _provision(*args: str, cwd: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    argv = f"sys.argv = ['provision', *{list(args)!r}]\n"
    code = WITHOUT_CELERY + argv + "from provisioner.cli.process import run\nrun()\n"
    env = {**os.environ, **environ}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_export_with_a_celery_app_says_in_one_line_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("from celery import Celery\napp = Celery('tasks')\n")
    result = _provision("export", "--definitions", str(DEFINITIONS), "--celery-app", "tasks:app", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"error: export --celery-app needs Celery, which is not installed: {INSTALL}"]
    assert result.stdout == ""


def test_export_and_validate_need_no_celery(tmp_path: Path) -> None:
    exported = _provision("export", "--definitions", str(DEFINITIONS), "-o", "topology.yaml", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    secret = {"FEDERATION_UPSTREAM_ORIGIN_URI": "amqp://origin"}  # the export's placeholder for a URI
    validated = _provision("validate", "topology.yaml", cwd=tmp_path, **secret)
    assert validated.returncode == 0, validated.stderr
    assert "Traceback" not in exported.stderr + validated.stderr


def test_the_worker_runtime_says_in_one_line_what_to_install(tmp_path: Path) -> None:
    code = WITHOUT_CELERY + (
        "from provisioner.errors import MissingExtra\n"
        "try:\n    from provisioner.celery import install\nexcept MissingExtra as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = f"the worker runtime (provisioner.celery.install) needs Celery, which is not installed: {INSTALL}"
    assert result.stdout.splitlines() == [expected]
