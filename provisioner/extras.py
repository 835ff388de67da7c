"""The optional dependencies (pyproject.toml's extras): a clear line where one is missing, before its import."""

from __future__ import annotations

from importlib.util import find_spec

from provisioner.errors import MissingExtra

EXTRAS = {"celery": "celery"}  # extra -> the module it installs


def require(extra: str, feature: str) -> None:
    """Raise MissingExtra, in one line that says what to install, when ``extra`` is not installed."""
    if find_spec(EXTRAS[extra]) is None:
        raise MissingExtra(
            f"{feature} needs Celery, which is not installed: install the '{extra}' extra where provisioner "
            f"comes from (pip install -e '.[{extra}]' in a clone, 'provisioner[{extra}] @ git+URL' otherwise)"
        )
