"""The helpers CLI tests share: run `provision` in-process, write a topology file, and the console script.

A test module imports them (``from provision_cli import run, write``) instead of
defining its own; `provision` reads the broker under test from the environment
conftest.py sets, and ``vhost`` fills a topology's ``${TEST_VHOST}``. PROVISION is
the installed console script, for the tests that need a process of their own.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner, Result

from provisioner.cli import main

PROVISION = str(Path(sys.executable).with_name("provision"))  # the console script beside this interpreter


def run(*args: str, vhost: str | None = None, env: dict[str, str] | None = None) -> Result:
    """``provision ARGS...`` in this process; an exception escapes as itself (never "exit 1")."""
    variables = {**(env or {}), **({"TEST_VHOST": vhost} if vhost is not None else {})}
    return CliRunner().invoke(main, list(args), env=variables or None, catch_exceptions=False)


def write(folder: Path, text: str, name: str = "topology.yaml") -> str:
    """The dedented ``text`` as ``folder/name``, from its first line of text (so a message's line numbers are the
    text's own); its path as the CLI takes it."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)
