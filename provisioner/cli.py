"""The `provision` command: the only place that prints results and chooses exit codes.

Exit codes: 0 success / no changes, 1 error, 2 changes present (with
--detailed-exitcode, drift, render --check).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from provisioner.errors import ProvisionerError, TopologyInvalid
from provisioner.topology.model import Topology

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn library errors into one line on stderr and exit 1; never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TopologyInvalid as error:
            for problem in error.problems:
                click.echo(str(problem), err=True)
            click.echo(f"{len(error.problems)} problem(s) found", err=True)
            sys.exit(EXIT_ERROR)
        except ProvisionerError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="provisioner")
def main() -> None:
    """Provision RabbitMQ topologies for Celery from one declarative file."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "--combined",
    is_flag=True,
    help="Check the files as ONE topology (as plan and apply read them), not each on its own.",
)
@reports_errors
def validate(files: tuple[str, ...], combined: bool) -> None:
    """Check topology FILES against the schema and the meaning rules.

    Each file is checked as a topology of its own, so that
    `provision validate topologies/*.yaml` checks independent examples and a
    pre-commit hook can pass any set of changed files. With --combined the
    files are one topology split across files (one per vhost, say).
    """
    from provisioner.topology import load

    groups = [list(files)] if combined else [[file] for file in files]
    problems = []
    for group in groups:
        try:
            topology = load(group)
        except TopologyInvalid as error:
            problems.extend(error.problems)
            continue
        click.echo(f"valid: {' + '.join(group)} ({_counts(topology)})")
    if problems:
        raise TopologyInvalid(problems)


def _counts(topology: Topology) -> str:
    """A short inventory line: what the topology holds."""
    return (
        f"{len(topology.vhosts)} vhost(s), {len(topology.exchanges)} exchange(s), "
        f"{len(topology.queues)} queue(s), {len(topology.bindings)} binding(s), "
        f"{len(topology.policies)} policy(ies), {len(topology.tasks)} task route(s)"
    )


if __name__ == "__main__":
    main()
