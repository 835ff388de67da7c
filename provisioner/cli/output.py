"""What the CLI prints and how it ends: every line through redact(), library errors as one line and an exit code."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from provisioner.errors import ProvisionerError, TopologyInvalid, UnsafeChange, one_line
from provisioner.redact import redact

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

F = TypeVar("F", bound=Callable[..., Any])

# Every password the command was given (URLs from options and the environment): never printed.
_SECRETS: set[str] = set()


def remember_secrets(*urls: str) -> None:
    """Add the passwords these URLs hold (parsable or not) to what :func:`say` masks."""
    from provisioner.broker.endpoints import url_secrets

    for url in urls:
        _SECRETS.update(url_secrets(url))


def say(text: str, *, err: bool = False, fg: str | None = None, nl: bool = True) -> None:
    """Print one line; every line the CLI prints passes through here, and so through redact() and one_line().

    Whatever a name or an error holds, it stays on its line: a line break, a carriage return,
    an escape or a bidi control is printed escaped, so no text can forge a line such as
    ``No changes.`` in a CI log.
    """
    click.secho(one_line(redact(text, _SECRETS)), err=err, fg=fg, nl=nl)


def say_document(text: str, *, err: bool = False) -> None:
    """Print a document of several lines (JSON, YAML, a rendered module) whose writer escaped every value.

    Each line still passes through redact(), and any control character other than the line
    breaks and tabs the document is made of is printed escaped.
    """
    lines = redact(text, _SECRETS).split("\n")
    click.echo("\n".join(one_line(line, keep="\t") for line in lines), err=err, nl=False)


def write_document(text: str, output: str, *, wrote_to_stderr: bool = False) -> None:
    """A generated document to standard output (``-``) or to a file, with one line saying where it went."""
    if output == "-":
        say_document(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise ProvisionerError(f"cannot write {output}: {error.strerror or error}") from None
    say(f"wrote {output}", err=wrote_to_stderr)


class _SayHandler(logging.Handler):
    """Library warnings (retry lines) on stderr, through :func:`say` like everything else."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            say(one_line(self.format(record)), err=True)
        except Exception:  # a log line must never break the command
            self.handleError(record)


def _install_log_handler() -> None:
    logger = logging.getLogger("provisioner")
    if not any(isinstance(handler, _SayHandler) for handler in logger.handlers):
        logger.addHandler(_SayHandler(logging.WARNING))


def reports_errors(command: F) -> F:
    """Turn library errors into one line on stderr and exit 1; never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TopologyInvalid as error:
            for problem in error.problems:
                say(str(problem), err=True)
            say(f"{len(error.problems)} problem(s) found", err=True)
            sys.exit(EXIT_ERROR)
        except UnsafeChange as error:  # a refusal with one reason a line (names in it are quoted, so escaped)
            for number, line in enumerate(str(error).split("\n")):
                say(f"error: {line}" if number == 0 else line, err=True)
            sys.exit(EXIT_ERROR)
        except ProvisionerError as error:
            say(f"error: {error}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            say("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # whoever read the output stopped reading (| head): nothing is wrong, nothing to say
            _drop_standard_output()
            sys.exit(EXIT_ERROR)
        except click.ClickException:  # a usage error a command found itself: the group prints it (group.py)
            raise
        except Exception as error:  # a bug of ours: still one line, the traceback only on request
            if os.environ.get("PROVISION_DEBUG"):
                raise
            say(
                f"internal error: {type(error).__name__}: {one_line(str(error))[:300]} "
                "(a bug in provisioner; PROVISION_DEBUG=1 shows the traceback)",
                err=True,
            )
            sys.exit(EXIT_ERROR)
        finally:
            if os.environ.get("PROVISION_PROFILE"):
                _echo_profile()

    return wrapper  # type: ignore[return-value]


def _drop_standard_output() -> None:
    """Point standard output at /dev/null, so the flush at exit does not meet the closed pipe again."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def _echo_profile() -> None:
    """PROVISION_PROFILE=1: one line on stderr with the seconds each phase of this process took."""
    from provisioner.profile import timings

    phases = " ".join(f"{name}={seconds:.3f}" for name, seconds in timings().items())
    say(f"profile: {phases}", err=True)


class ProgressBar:
    """A progress bar on stderr for long work (an apply, a replay), only on a terminal: never in CI logs."""

    MINIMUM = 200  # steps; shorter work finishes before a bar would be read

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.lock = threading.Lock()  # an apply's worker threads report progress

    def start(self, total: int) -> None:
        if total >= self.MINIMUM and sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()

    def update(self, count: int) -> None:
        if self.bar is not None:
            with self.lock:
                self.bar.update(count)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
