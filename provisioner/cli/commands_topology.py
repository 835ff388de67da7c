"""Commands about the topology file itself: validate it, render Celery's config from it, export one from a broker."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioner.broker.clients import BrokerClients as Broker
from provisioner.cli.clients import broker_options
from provisioner.cli.group import main
from provisioner.cli.output import EXIT_CHANGES, reports_errors, say, say_document, write_document
from provisioner.errors import ProvisionerError, TopologyInvalid, one_line

if TYPE_CHECKING:  # each command imports what it needs when it runs: `provision --version` stays fast
    from provisioner.topology.model import Topology


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "--combined",
    is_flag=True,
    help="Check the files as ONE topology (as plan and apply read them), not each on its own.",
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "github"]),
    default="text",
    show_default=True,
    help="github: each problem as a GitHub workflow annotation at its file, line and column.",
)
@reports_errors
def validate(files: tuple[str, ...], combined: bool, strict: bool, output_format: str) -> None:
    """Check topology FILES against the schema and the meaning rules.

    Each file is checked as a topology of its own, so that
    `provision validate topologies/*.yaml` checks independent examples and a
    pre-commit hook can pass any set of changed files. With --combined the
    files are one topology split across files (one per vhost, say). Warnings
    (what a newer broker refuses, say) are printed and pass, unless --strict.
    """
    from provisioner.errors import Problem
    from provisioner.topology import load

    if output_format == "github":
        from provisioner.cli.annotations import validate_annotated

        validate_annotated(files, combined, strict)
        return
    groups = [list(files)] if combined else [[file] for file in files]
    problems: list[Problem] = []
    for group in groups:
        warnings: list[Problem] = []
        try:
            topology = load(group, warnings=warnings)
        except TopologyInvalid as error:
            problems.extend(error.problems)
            continue
        finally:
            if not strict:
                for warning in warnings:
                    say(str(warning), err=True)
        problems.extend(warnings if strict else [])
        if not (strict and warnings):
            say(f"valid: {' + '.join(group)} ({_counts(topology)})")
    if problems:
        raise TopologyInvalid(problems)


def _counts(topology: Topology) -> str:
    """A short inventory line: what the topology holds."""
    return (
        f"{len(topology.vhosts)} vhost(s), {len(topology.exchanges)} exchange(s), "
        f"{len(topology.queues)} queue(s), {len(topology.bindings)} binding(s), "
        f"{len(topology.policies)} policy(ies), {len(topology.tasks)} task route(s)"
    )


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("-o", "--output", required=True, help="The config module to write; - for standard output.")
@click.option("--check", is_flag=True, help="Write nothing; exit 2 when OUTPUT is not what render would write.")
@reports_errors
def render(files: tuple[str, ...], output: str, check: bool) -> None:
    """Write the Celery config module (task_queues, task_routes, worker settings) for the topology."""
    from provisioner.celery.render import render as render_config
    from provisioner.celery.render import source_names
    from provisioner.profile import phase
    from provisioner.topology import load

    topology = load(files)
    with phase("render"):
        text = render_config(topology, sources=source_names(files, output))
    command = f"provision render {' '.join(files)} -o {output}"
    if check:
        try:
            current = Path(output).read_text(encoding="utf-8")
        except FileNotFoundError:
            say(f"stale: {output} does not exist; run: {command}")
            sys.exit(EXIT_CHANGES)
        except OSError as error:
            raise ProvisionerError(f"cannot read {output}: {error.strerror or error}") from None
        if current != text:
            say(f"stale: {output} differs from what the topology renders; run: {command}")
            sys.exit(EXIT_CHANGES)
        say(f"fresh: {output} matches {', '.join(files)}")
        return
    write_document(text, output)


@main.command("export")
@click.option("--vhost", "vhosts", multiple=True, help="A vhost to export (repeatable); default: every vhost.")
@click.option(
    "--definitions",
    "definitions_file",
    type=click.Path(dir_okay=False),
    help="Read a definitions JSON file (rabbitmqctl export_definitions, GET /api/definitions) instead of the broker.",
)
@click.option("--celery-app", help="MODULE:APP whose task_queues and task_routes become tasks: and celery:.")
@click.option("-o", "--output", default="-", help="The topology file to write; - (default) for standard output.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--accounts", is_flag=True, help="Also users, permissions, topic permissions (passwords as ${VAR}).")
@broker_options
@reports_errors
def export(
    vhosts: tuple[str, ...],
    definitions_file: str | None,
    celery_app: str | None,
    output: str,
    force: bool,
    accounts: bool,
    broker: Broker,
) -> None:
    """Write the topology of a live broker, a definitions file or a Celery app (reads only, never writes)."""
    from provisioner.export.celery_app import load_app
    from provisioner.export.run import export_topology
    from provisioner.export.source import from_broker, from_file

    if output != "-" and Path(output).exists() and not force:
        raise ProvisionerError(f"{output} exists; pass --force to overwrite it")
    app = load_app(celery_app) if celery_app else None
    management = broker.management
    definitions = from_file(definitions_file, vhosts) if definitions_file else from_broker(management, vhosts)
    result = export_topology(definitions, app, accounts, output)
    for warning in result.warnings:
        say(f"warning: {warning}", err=True)
    name = "<stdout>" if output == "-" else output
    for line, message in result.problems:
        say(f"problem: {name}:{line}: {one_line(message)}", err=True)
    if output == "-":
        say_document(result.text)
    else:
        try:
            Path(output).write_text(result.text, encoding="utf-8")
        except OSError as error:
            raise ProvisionerError(f"cannot write {output}: {error.strerror or error}") from None
    reads = (
        ""
        if definitions_file
        else (f" ({management.requests_made} management request(s), {management.writes_made} write(s))")
    )
    say(
        f"exported {result.vhosts} vhost(s) from {definitions.source} to {name}{reads}; "
        f"{result.skipped} object(s) of Celery's, the broker's or provisioner's own left out, "
        f"{len(result.problems)} problem(s)",
        err=True,
    )
