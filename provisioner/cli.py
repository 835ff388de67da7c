"""The `provision` command: the only place that prints results and chooses exit codes.

Exit codes: 0 success / no changes, 1 error, 2 changes present (with
--detailed-exitcode, drift, render --check).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from provisioner import __version__
from provisioner.broker.clients import BrokerClients as Broker
from provisioner.broker.endpoints import DEFAULT_AMQP_URL, DEFAULT_MANAGEMENT_URL
from provisioner.errors import ProvisionerError, TopologyInvalid, one_line
from provisioner.options import DEFAULT_LOCK_TIMEOUT, DEFAULT_WORKERS
from provisioner.redact import redact

if TYPE_CHECKING:  # each command imports what it needs when it runs: `provision --version` stays fast
    from provisioner.broker.live import LiveSoon, LiveVhost
    from provisioner.live_state import IncludeObject
    from provisioner.plan import Plan
    from provisioner.topology.model import Topology

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
    """Print one message; every line the CLI prints passes through here, and so through redact()."""
    click.secho(redact(text, _SECRETS), err=err, fg=fg, nl=nl)


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
        except ProvisionerError as error:
            say(f"error: {error}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            say("interrupted", err=True)
            sys.exit(130)
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="provision")  # no importlib.metadata: it costs 0.1 s
def main() -> None:
    """Provision RabbitMQ topologies for Celery from one declarative file."""
    _SECRETS.clear()
    remember_secrets(*(os.environ.get(name, "") for name in ("PROVISION_AMQP_URL", "PROVISION_MANAGEMENT_URL")))
    _install_log_handler()


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "--combined",
    is_flag=True,
    help="Check the files as ONE topology (as plan and apply read them), not each on its own.",
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@reports_errors
def validate(files: tuple[str, ...], combined: bool, strict: bool) -> None:
    """Check topology FILES against the schema and the meaning rules.

    Each file is checked as a topology of its own, so that
    `provision validate topologies/*.yaml` checks independent examples and a
    pre-commit hook can pass any set of changed files. With --combined the
    files are one topology split across files (one per vhost, say). Warnings
    (what a newer broker refuses, say) are printed and pass, unless --strict.
    """
    from provisioner.errors import Problem
    from provisioner.topology import load

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


def _echo_profile() -> None:
    """PROVISION_PROFILE=1: one line on stderr with the seconds each phase of this process took."""
    from provisioner.profile import timings

    phases = " ".join(f"{name}={seconds:.3f}" for name, seconds in timings().items())
    click.echo(f"profile: {phases}", err=True)


def broker_options(command: F) -> F:
    """--amqp-url, --management-url, --ca-file, --retry-seconds: where the broker is (env by default)."""
    options = [
        click.option(
            "--amqp-url",
            envvar="PROVISION_AMQP_URL",
            default=DEFAULT_AMQP_URL,
            show_default="amqp://guest:***@localhost:5672/",
            help="AMQP URL (env PROVISION_AMQP_URL); amqps:// for TLS. Its vhost is ignored: the topology names it. "
            "A cluster's nodes comma-separated: the first that answers is used (a comma in a password: %2C).",
        ),
        click.option(
            "--management-url",
            envvar="PROVISION_MANAGEMENT_URL",
            default=DEFAULT_MANAGEMENT_URL,
            show_default="http://guest:***@localhost:15672",
            help="Management API URL (env PROVISION_MANAGEMENT_URL); https:// for TLS. "
            "Several nodes comma-separated, in the order of --amqp-url.",
        ),
        click.option(
            "--ca-file",
            envvar="PROVISION_CA_FILE",
            type=click.Path(exists=True, dir_okay=False),
            help="CA bundle for amqps:// and https:// (env PROVISION_CA_FILE).",
        ),
        click.option(
            "--retry-seconds",
            default=15.0,
            show_default=True,
            type=click.FloatRange(0),
            help="How long transient faults (connection refused or reset, 5xx) are retried.",
        ),
    ]

    @wraps(command)
    def wrapper(
        *args: Any, amqp_url: str, management_url: str, ca_file: str | None, retry_seconds: float, **kwargs: Any
    ) -> Any:
        remember_secrets(amqp_url, management_url)
        return command(*args, broker=_clients(amqp_url, management_url, ca_file, retry_seconds), **kwargs)

    decorated: Any = reports_errors(wrapper)  # a URL that does not parse is one line too
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def _clients(amqp_url: str, management_url: str, ca_file: str | None, retry_seconds: float) -> Broker:
    from provisioner.broker.endpoints import Endpoints
    from provisioner.broker.management import Management
    from provisioner.broker.retry import Backoff

    endpoints = Endpoints(amqp_url, management_url, ca_file).check()
    backoff = Backoff(attempts=1 + int(retry_seconds > 0) * 7, deadline=retry_seconds, failover=endpoints.nodes > 1)
    return Broker(endpoints, Management(endpoints, backoff=backoff))


def _echo_plan(plan: Plan) -> None:
    from provisioner.output import plan_lines

    for text, colour in plan_lines(plan):
        say(text, fg=colour)


IGNORE_HELP = (
    "Leave out objects the topology does not describe whose name matches this glob pattern: never listed, "
    "never drift, never pruned (repeatable)."
)


def _plan(
    files: tuple[str, ...],
    broker: Broker,
    prune: bool,
    ignore: tuple[str, ...] = (),
    seen: dict[str, LiveVhost] | None = None,
) -> Plan:
    """Load and plan; the broker's export of the vhosts is read while the topology is still being checked.

    ``seen`` receives the live vhosts the plan read (for the upgrade-readiness lines).
    """
    from provisioner.broker.live import read_live_soon
    from provisioner.topology import load
    from provisioner.topology.load import collector_paused

    endpoints, management = broker.endpoints, broker.management
    reading: list[LiveSoon] = []
    desired = load(files, on_vhosts=lambda vhosts: reading.append(read_live_soon(management, vhosts)))
    _SECRETS.update(desired.accounts.passwords())  # users' passwords: never printed, even by mistake
    live_soon = reading[0] if reading else None
    from provisioner.live_state import ignoring  # imported while the broker is still answering
    from provisioner.planning import make_plan

    if live_soon is not None and seen is not None:
        live_soon = _remembering(live_soon, seen)
    with collector_paused():  # the live state and the diff build many objects and no cycles
        return make_plan(desired, management, prune, endpoints, live_soon=live_soon, include=ignoring(ignore))


def _remembering(read: LiveSoon, seen: dict[str, LiveVhost]) -> LiveSoon:
    """The same read, keeping what it returned in ``seen``."""
    from provisioner.live_state import include_object

    def remembered(desired: Topology | None = None, include: IncludeObject = include_object) -> dict[str, LiveVhost]:
        states = read(desired, include)
        seen.update(states or {})
        return states

    return remembered


def _live_readiness(seen: dict[str, LiveVhost]) -> list[str]:
    """What RabbitMQ 4.x removes or denies among the live objects of the managed vhosts, one line each."""
    from provisioner.topology import readiness

    return [
        readiness.live_line(finding)
        for state in sorted(seen.values(), key=lambda state: state.name)
        if state.exists
        for finding in readiness.findings(state.topology)
    ]


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON for machines.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 for no changes, 2 for changes, 1 for errors.")
@click.option("--prune", is_flag=True, help="Plan deletion of objects in managed vhosts the topology lacks.")
@click.option("--ignore", "ignore", multiple=True, metavar="PATTERN", help=IGNORE_HELP)
@broker_options
@reports_errors
def plan(
    files: tuple[str, ...],
    as_json: bool,
    detailed_exitcode: bool,
    prune: bool,
    ignore: tuple[str, ...],
    broker: Broker,
) -> None:
    """Show what apply would change on the live broker, and why.

    Exits 1 when the broker lacks an external exchange the topology relies on
    (apply would refuse); with --detailed-exitcode 2 for changes or drift.
    """
    import json

    seen: dict[str, LiveVhost] = {}
    result = _plan(files, broker, prune, ignore, seen)
    upgrade_warnings = _live_readiness(seen)
    if as_json:
        document = result.to_json() | {"upgrade_warnings": upgrade_warnings}
        say(json.dumps(document, indent=2, sort_keys=True, default=str))
        for problem in result.problems:
            say(f"error: {problem}", err=True)
    else:
        for line in upgrade_warnings:
            say(f"warning: {line}", err=True)
        _echo_plan(result)
    if result.problems:
        sys.exit(EXIT_ERROR)
    if detailed_exitcode and not result.in_sync:
        sys.exit(EXIT_CHANGES)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "--prune",
    is_flag=True,
    help="Also count objects in managed vhosts that the topology lacks as drift (what apply --prune would "
    "delete). A drift check never changes or deletes anything.",
)
@click.option("--ignore", "ignore", multiple=True, metavar="PATTERN", help=IGNORE_HELP)
@broker_options
@reports_errors
def drift(files: tuple[str, ...], prune: bool, ignore: tuple[str, ...], broker: Broker) -> None:
    """CI drift check: exit 0 when the broker matches, 2 (with the differences) when it drifted.

    Drift is what apply would change, and policies or operator policies outside
    the topology that change managed queues or exchanges. Other objects the
    topology lacks are listed, not counted (unless --prune). Exit 1 when the
    broker lacks an external exchange the topology relies on.
    """
    from provisioner.output import parked_text, summary_line

    result = _plan(files, broker, prune, ignore)
    sources = ", ".join(files)
    if result.in_sync:
        say(f"no drift: the broker matches {sources}")
    else:
        say(f"DRIFT: the broker differs from {sources}")
    for change in result.changes:
        say(
            f"drift: {change.action.value} {change.kind} {change.name!r} "
            + (f"in {change.vhost!r}" if change.vhost else "(cluster-wide)")  # users have no vhost
            + f": {change.reason}"
            + parked_text(change)
        )
    for item in result.drift:
        label = "operator policy" if item.policy.kind == "operator_policy" else "policy"
        for hit in item.hits:
            say(f"drift: {label} {item.policy.name!r} in {item.policy.vhost!r} changes {hit.text()}")
    for unmanaged in result.unmanaged:
        if unmanaged.resource.key not in {item.policy.key for item in result.drift}:
            resource = unmanaged.resource
            note = f" ({unmanaged.note})" if unmanaged.note else ""
            say(f"unmanaged (not drift): {resource.kind} {resource.name!r} in {resource.vhost!r}{note}")
    for problem in result.problems:
        say(f"error: {problem}", err=True)
    if result.problems:
        sys.exit(EXIT_ERROR)
    if not result.in_sync:
        say(summary_line(result))
        sys.exit(EXIT_CHANGES)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--prune", is_flag=True, help="Delete objects in managed vhosts that the topology lacks.")
@click.option("--migrate", is_flag=True, help="Replace queues whose immutable properties changed, keeping messages.")
@click.option("--force", is_flag=True, help="With --prune: also delete queues that hold messages or have consumers.")
@click.option(
    "--workers",
    default=DEFAULT_WORKERS,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Parallel AMQP connections.",
)
@click.option(
    "--lock-timeout",
    default=DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds to wait for another apply.",
)
@click.option("--ignore", "ignore", multiple=True, metavar="PATTERN", help=IGNORE_HELP)
@broker_options
@reports_errors
def apply(
    files: tuple[str, ...],
    prune: bool,
    migrate: bool,
    force: bool,
    workers: int,
    lock_timeout: float,
    ignore: tuple[str, ...],
    broker: Broker,
) -> None:
    """Converge the broker to the topology; a second apply does nothing and writes nothing."""
    from provisioner.apply import ApplyOptions, converge
    from provisioner.live_state import ignoring
    from provisioner.topology import load

    desired = load(files)
    _SECRETS.update(desired.accounts.passwords())
    endpoints, management = broker.endpoints, broker.management
    options = ApplyOptions(prune, migrate, force, workers, lock_timeout, include_object=ignoring(ignore))
    with _Progress() as progress:
        report = converge(desired, endpoints, management, options, progress.update, progress.start)
    if report.plan.is_empty and report.plan.drift:
        click.echo(
            f"No changes. {len(report.plan.drift)} object(s) not in the topology change managed ones "
            "(provision plan shows how; apply --prune deletes them)."
        )
        return
    if report.plan.is_empty:
        say("No changes. The broker matches the topology.")
        return
    counts = report.plan.summary()
    moved = f", {report.messages_migrated} message(s) migrated" if report.messages_migrated else ""
    say(
        f"Applied: {counts['create']} created, {counts['update']} updated, {counts['replace']} replaced, "
        f"{counts['delete']} deleted{moved}."
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
    if output == "-":
        say(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise ProvisionerError(f"cannot write {output}: {error.strerror or error}") from None
    say(f"wrote {output}")


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
    from provisioner.export import export_topology
    from provisioner.export.celery_app import load_app
    from provisioner.export.source import from_broker, from_file

    if output != "-" and Path(output).exists() and not force:
        raise ProvisionerError(f"{output} exists; pass --force to overwrite it")
    app = load_app(celery_app) if celery_app else None
    management = broker.management
    definitions = from_file(definitions_file, vhosts) if definitions_file else from_broker(management, vhosts)
    result = export_topology(definitions, app, accounts)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    name = "<stdout>" if output == "-" else output
    for line, message in result.problems:
        click.echo(f"problem: {name}:{line}: {one_line(message)}", err=True)
    if output == "-":
        click.echo(result.text, nl=False)
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
    click.echo(
        f"exported {result.vhosts} vhost(s) from {definitions.source} to {name}{reads}; "
        f"{result.skipped} object(s) of Celery's, the broker's or provisioner's own left out, "
        f"{len(result.problems)} problem(s)",
        err=True,
    )


@main.group()
def dlq() -> None:
    """Dead-letter queues of the topology: list, show, replay, purge (see README, Dead letters)."""


def _age(when: Any) -> str:
    import datetime

    if when is None:
        return "-"
    seconds = max(0, int((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dlq.command("list")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@broker_options
@reports_errors
def dlq_list(files: tuple[str, ...], as_json: bool, broker: Broker) -> None:
    """Each dead-letter queue: its source queues, exact count, oldest letter, most frequent failures."""
    import json

    from provisioner.dlq.run import inventory
    from provisioner.topology import load

    endpoints, management = broker.endpoints, broker.management
    rows = inventory(load(files), endpoints, management.backoff)
    if as_json:
        say(json.dumps({"dead_letter_queues": [_inventory_json(row) for row in rows]}, indent=2))
        return
    if not rows:
        say("The topology has no dead-letter queues.")
    for row in rows:
        sources = ", ".join(row.queue.sources)
        say(
            f"{row.queue.name}  (vhost {row.queue.vhost!r}, from {sources}): {row.messages} message(s), "
            f"oldest {_age(row.oldest)}"
        )
        for task, exception, count in row.failures:
            say(f"    {count:>6}  {task}  {exception}")


def _inventory_json(row: Any) -> dict[str, Any]:
    return {
        "vhost": row.queue.vhost,
        "name": row.queue.name,
        "sources": list(row.queue.sources),
        "messages": row.messages,
        "oldest": row.oldest.isoformat() if row.oldest else None,
        "failures": [{"task": t, "exception": e, "count": n} for t, e, n in row.failures],
    }


@dlq.command("show")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.argument("queue")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(0), help="How many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@broker_options
@reports_errors
def dlq_show(files: tuple[str, ...], queue: str, count: int, as_json: bool, broker: Broker) -> None:
    """The first N messages of dead-letter QUEUE, left in place and in order."""
    import json

    from provisioner.dlq.run import show
    from provisioner.topology import load

    endpoints, management = broker.endpoints, broker.management
    found, total, letters = show(load(files), queue, count, endpoints, management.backoff)
    if as_json:
        shown = [_letter_json(letter, target) for letter, target in letters]
        say(json.dumps({"queue": found.name, "vhost": found.vhost, "messages": total, "shown": shown}, indent=2))
        return
    say(f"{found.name} (vhost {found.vhost!r}): {total} message(s), showing {len(letters)}")
    for position, (letter, target) in enumerate(letters, 1):
        for line in _letter_lines(position, letter, target):
            say(line)


def _letter_lines(position: int, letter: Any, target: Any) -> list[str]:
    import json

    lines = [f"#{position}  task {letter.task or '-'}  exception {one_line(letter.exception or '-')}"]
    for death in letter.deaths:
        keys = ",".join(death.routing_keys)
        lines.append(
            f"    x-death: {death.reason} in queue {death.queue!r} (exchange {death.exchange!r}, keys {keys!r}) "
            f"x{death.count} at {death.time.isoformat() if death.time else '-'}"
        )
    back = f"{target.describe()} ({target.why})" if target else "unknown (replay needs --to)"
    lines.append(f"    goes back to: {back}")
    headers = {k: v for k, v in letter.headers.items() if k not in ("x-death", "x-exception-traceback")}
    lines.append(f"    headers: {one_line(json.dumps(headers, sort_keys=True, default=str))[:1000]}")
    traceback = str(letter.headers.get("x-exception-traceback") or "").strip()
    lines.extend(f"    | {one_line(text)}" for text in traceback.splitlines())
    lines.append(f"    body: {letter.preview()}")
    return lines


def _letter_json(letter: Any, target: Any) -> dict[str, Any]:
    import json

    return {
        "task": letter.task,
        "exception": letter.exception,
        "exception_type": letter.exception_type,
        "traceback": letter.headers.get("x-exception-traceback"),
        "x_death": [
            {
                "reason": d.reason,
                "queue": d.queue,
                "exchange": d.exchange,
                "routing_keys": list(d.routing_keys),
                "count": d.count,
                "time": d.time.isoformat() if d.time else None,
            }
            for d in letter.deaths
        ],
        "headers": json.loads(json.dumps(dict(letter.headers), default=str)),
        "goes_back_to": {"exchange": target.exchange, "routing_key": target.routing_key, "why": target.why}
        if target
        else None,
        "body_preview": letter.preview(),
        "body_bytes": len(letter.body),
    }


@dlq.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.argument("queue")
@click.option("--limit", type=click.IntRange(1), help="Move at most this many messages.")
@click.option("--task", help="Only messages of this Celery task.")
@click.option("--exception", help="Only messages that failed with this exception type (e.g. ValueError).")
@click.option("--to", "to", help="Send every selected message to this queue instead of where it came from.")
@click.option("--dry-run", is_flag=True, help="Print what would go where; change nothing.")
@broker_options
@reports_errors
def dlq_replay(
    files: tuple[str, ...],
    queue: str,
    limit: int | None,
    task: str | None,
    exception: str | None,
    to: str | None,
    dry_run: bool,
    broker: Broker,
) -> None:
    """Move messages of dead-letter QUEUE back where they came from, each removed only once its copy is confirmed."""
    from provisioner.dlq.letters import Selection
    from provisioner.dlq.run import replay

    endpoints, management = broker.endpoints, broker.management
    with _Bar("replaying") as bar:
        report = replay(
            _load(files),
            queue,
            endpoints,
            management.backoff,
            selection=Selection(task, exception),
            limit=limit,
            to=to,
            dry_run=dry_run,
            progress=bar.update,
            started=bar.start,
        )
    for move in report.plan:
        where_to = move.destination.describe() if move.destination else f"stays ({move.reason})"
        what = f"{move.letter.task or '-'} ({move.letter.exception_type or '-'})"
        say(f"would move #{move.position} {what} -> {where_to}")
    verb = "would replay" if dry_run else "replayed"
    say(f"{verb} {report.moved} message(s) from {report.queue.name}; {report.stayed} stay in it")
    problems = dict(report.failed)
    for move in report.plan:
        if move.destination is None and move.reason not in ("not selected", "--limit"):
            problems[move.reason] = problems.get(move.reason, 0) + 1
    for reason, count in sorted(problems.items()):
        say(f"error: {count} message(s) stay in {report.queue.name}: {one_line(reason)}", err=True)
    if problems:
        sys.exit(EXIT_ERROR)


def _load(files: tuple[str, ...]) -> Topology:
    from provisioner.topology import load

    return load(files)


@dlq.command("purge")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.argument("queue")
@click.option("--force", is_flag=True, help="Required: the messages are deleted for good.")
@broker_options
@reports_errors
def dlq_purge(files: tuple[str, ...], queue: str, force: bool, broker: Broker) -> None:
    """Delete every message of dead-letter QUEUE (never of a work queue); needs --force."""
    from provisioner.dlq.letters import find_dead_letter_queue
    from provisioner.dlq.run import purge

    topology = _load(files)
    find_dead_letter_queue(topology, queue)  # a work queue is refused before anything else
    if not force:
        raise ProvisionerError(f"purge deletes the messages of {queue!r} for good; add --force")
    endpoints, management = broker.endpoints, broker.management
    found, count = purge(topology, queue, endpoints, management.backoff)
    say(f"purged {count} message(s) from {found.name} (vhost {found.vhost!r})")


class _Bar:
    """A progress bar on stderr for long replays, only on a terminal."""

    MINIMUM = 200

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def start(self, total: int) -> None:
        if total >= self.MINIMUM and sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


class _Progress:
    """A progress bar on stderr for applies of many changes, only on a terminal (never in CI logs)."""

    MINIMUM = 200  # changes; smaller applies finish before a bar would be read

    def __init__(self) -> None:
        self.bar: Any = None
        self.lock = threading.Lock()

    def start(self, plan: Plan) -> None:
        _echo_plan(plan)
        if len(plan.changes) >= self.MINIMUM and sys.stderr.isatty():
            self.bar = click.progressbar(length=len(plan.changes), label="applying", file=sys.stderr)
            self.bar.__enter__()

    def update(self, count: int) -> None:
        if self.bar is not None:
            with self.lock:  # called from the apply's worker threads
                self.bar.update(count)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


if __name__ == "__main__":
    main()
