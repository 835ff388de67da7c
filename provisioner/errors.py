"""Typed errors: the library raises these, only the CLI prints them and picks exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class ProvisionerError(Exception):
    """Base of every error the CLI turns into one line and exit code 1."""


@dataclass(frozen=True)
class Problem:
    """One finding in a topology file: where it is and what is wrong."""

    file: str
    line: int
    column: int
    message: str
    path: str = ""
    severity: str = "error"  # error | warning: a warning lets validate pass unless --strict

    def __str__(self) -> str:
        where = f" (at {one_line(self.path)})" if self.path else ""
        label = "warning: " if self.severity == "warning" else ""
        return f"{_safe_start(one_line(self.file))}:{self.line}:{self.column}: {label}{one_line(self.message)}{where}"


def _safe_start(file: str) -> str:
    """A file name that starts a line, never as a workflow command: GitHub reads any line that starts with '::'
    (after white space) as one, so a file named '::stop-commands::x.yaml' would silence every later annotation."""
    return f"./{file}" if file.lstrip().startswith("::") else file


def one_line(text: str, keep: str = "") -> str:
    """Escape line breaks, control, bidi and other unprintable characters (except those in ``keep``): one line."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(ch if ch.isprintable() or ch in keep else repr(ch)[1:-1] for ch in text)


class TopologyInvalid(ProvisionerError):
    """The topology files do not load or do not validate; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class BrokerError(ProvisionerError):
    """The broker could not be reached or refused a request (message never holds credentials)."""


class UnsafeChange(ProvisionerError):
    """The plan holds changes that need an explicit flag (--migrate, --force)."""


class PlanProblem(ProvisionerError):
    """The broker lacks something the topology relies on but does not own (an external exchange)."""


class LockTimeout(ProvisionerError):
    """Another apply holds the vhost lock for longer than --lock-timeout."""


class MissingExtra(ProvisionerError, ImportError):
    """A feature's optional dependencies are not installed (the ``celery`` extra)."""
