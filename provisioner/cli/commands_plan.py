"""Commands that compare the topology with the live broker: plan, drift, and apply, which converges it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from provisioner.broker.clients import BrokerClients as Broker
from provisioner.cli.clients import broker_options
from provisioner.cli.group import main
from provisioner.cli.output import _SECRETS, EXIT_CHANGES, EXIT_ERROR, ProgressBar, reports_errors, say, say_document
from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.options import DEFAULT_LOCK_TIMEOUT, DEFAULT_WORKERS

if TYPE_CHECKING:  # each command imports what it needs when it runs: `provision --version` stays fast
    from provisioner.apply import ApplyReport
    from provisioner.broker.live import LiveSoon
    from provisioner.live_state import IncludeObject, LiveVhost
    from provisioner.plan import Plan
    from provisioner.topology.model import Topology
    from provisioner.topology.readiness import Finding


def _echo_plan(plan: Plan, err: bool = False) -> None:
    from provisioner.output import plan_lines

    for text, colour in plan_lines(plan):
        say(text, fg=colour, err=err)


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
    check_amqp: bool = False,
) -> Plan:
    """Load and plan; the broker's export of the vhosts is read while the topology is still being checked.

    ``seen`` receives the live vhosts the plan read (for the upgrade-readiness lines); ``check_amqp``
    also opens and closes one AMQP connection, so a run that declares nothing still proves that door.
    """
    from provisioner.broker.live import read_live_soon
    from provisioner.doors import AmqpDoor
    from provisioner.topology import load
    from provisioner.topology.documents import collector_paused

    endpoints, management = broker.endpoints, broker.management
    reading: list[LiveSoon] = []
    doors: list[AmqpDoor] = []

    def soon(vhosts: list[str]) -> None:
        reading.append(read_live_soon(management, vhosts))
        if check_amqp and vhosts:  # the AMQP login runs while the broker exports the vhosts
            doors.append(AmqpDoor(endpoints, min(vhosts), management.backoff))

    desired = load(files, on_vhosts=soon)
    _SECRETS.update(desired.accounts.passwords())  # users' passwords: never printed, even by mistake
    live_soon = reading[0] if reading else None
    from provisioner.live_state import ignoring  # imported while the broker is still answering
    from provisioner.planning import make_plan

    if live_soon is not None and seen is not None:
        live_soon = _remembering(live_soon, seen)
    with collector_paused():  # the live state and the diff build many objects and no cycles
        result = make_plan(desired, management, prune, endpoints, live_soon=live_soon, include=ignoring(ignore))
    for door in doors:
        door.verdict(result)
    return result


def _remembering(read: LiveSoon, seen: dict[str, LiveVhost]) -> LiveSoon:
    """The same read, keeping what it returned in ``seen``."""

    def remembered(desired: Topology | None = None, include: IncludeObject | None = None) -> dict[str, LiveVhost]:
        states = read(desired, include)
        seen.update(states or {})
        return states

    return remembered


def _live_readiness(seen: dict[str, LiveVhost], broker: Broker) -> list[str]:
    """What RabbitMQ 4.x removes or denies among the live objects of the managed vhosts, one line each.

    Each line ends with what the broker's own version does with the setting, where it does something.
    """
    from provisioner.topology import readiness
    from provisioner.version_rules import broker_version

    found = [
        finding
        for state in sorted(seen.values(), key=lambda state: state.name)
        if state.exists
        for finding in readiness.findings(state.topology)
    ]
    if not found:
        return []
    said = _verdict_texts(found, broker_version(seen), broker)
    return [readiness.live_line(f) + (f" ({said[index]})" if index in said else "") for index, f in enumerate(found)]


def _verdict_texts(found: list[Finding], version: str, broker: Broker) -> dict[int, str]:
    """By position in ``found``: what the broker's version does with each live finding, where it does something."""
    from provisioner.topology.verdicts import verdict
    from provisioner.version_notes import read_denied
    from provisioner.version_rules import needs_denied

    if not version:
        return {}
    denied = read_denied(broker.management) if needs_denied(found) else None
    said = {index: verdict(finding, version, denied) for index, finding in enumerate(found)}
    return {index: v.text for index, v in said.items() if v is not None and v.effect != "takes"}


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON for machines.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="markdown: for a pull-request comment (summary, table per vhost, what is destroyed, privilege changes).",
)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 for no changes, 2 for changes, 1 for errors.")
@click.option("--prune", is_flag=True, help="Plan deletion of objects in managed vhosts the topology lacks.")
@click.option("--ignore", "ignore", multiple=True, metavar="PATTERN", help=IGNORE_HELP)
@click.option(
    "-o",
    "--out",
    "saved_to",
    metavar="PLAN",
    help="Also save the plan to PLAN (no secret in it): `provision apply PLAN` applies exactly it, or refuses.",
)
@click.option("--migrate", is_flag=True, help="With -o: the saved plan's replacements keep messages (apply --migrate).")
@click.option("--force", is_flag=True, help="With -o and --prune: the saved plan may delete queues holding messages.")
@broker_options
@reports_errors
def plan(
    files: tuple[str, ...],
    as_json: bool,
    output_format: str,
    detailed_exitcode: bool,
    prune: bool,
    ignore: tuple[str, ...],
    saved_to: str | None,
    migrate: bool,
    force: bool,
    broker: Broker,
) -> None:
    """Show what apply would change on the live broker, and why.

    Exits 1 when the broker lacks an external exchange the topology relies on
    (apply would refuse); with --detailed-exitcode 2 for changes or drift.
    """
    import json

    seen: dict[str, LiveVhost] = {}
    unsaved: str | None = None
    if saved_to is not None:
        from provisioner.cli import saved

        result, unsaved = saved.save(files, saved_to, broker, prune, migrate, force, ignore)
    elif migrate or force:
        raise click.UsageError("--migrate and --force go with -o PLAN: they say what the saved plan may do")
    else:
        result = _plan(files, broker, prune, ignore, seen)
    upgrade_warnings = _live_readiness(seen, broker)
    if output_format == "markdown":
        from provisioner.formats.markdown import plan_markdown

        say_document(plan_markdown(result))
        for problem in result.problems:
            say(f"error: {problem}", err=True)
    elif as_json or output_format == "json":
        read = {vhost: state.read for vhost, state in sorted(seen.items())}  # "kinds" or "definitions"
        document = result.to_json() | {"upgrade_warnings": upgrade_warnings, "live_read": read}
        say_document(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        for problem in result.problems:
            say(f"error: {problem}", err=True)
    else:
        for line in upgrade_warnings:
            say(f"warning: {line}", err=True)
        _echo_plan(result)
    if saved_to is not None:
        saved.report_saved(saved_to, result, unsaved)
    if result.problems or unsaved is not None:
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
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "github"]),
    default="text",
    show_default=True,
    help="github: also each difference as a GitHub workflow annotation at the object's line in the topology.",
)
@broker_options
@reports_errors
def drift(files: tuple[str, ...], prune: bool, ignore: tuple[str, ...], output_format: str, broker: Broker) -> None:
    """CI drift check: exit 0 when the broker matches, 2 (with the differences) when it drifted.

    Drift is what apply would change, and policies or operator policies outside
    the topology that change managed queues or exchanges. Other objects the
    topology lacks are listed, not counted (unless --prune). Exit 1 when the
    broker lacks an external exchange the topology relies on.
    """
    from provisioner.output import parked_text, summary_line

    result = _plan(files, broker, prune, ignore, check_amqp=True)
    if output_format == "github":
        from provisioner.cli.annotations import echo_drift

        echo_drift(files, result)
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
        label = "operator policy" if item.policy.kind == OPERATOR_POLICY.name else "policy"
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
@click.option(
    "-y", "--yes", is_flag=True, help="Do not ask on a terminal before writing (without a terminal apply never asks)."
)
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
    yes: bool,
    broker: Broker,
) -> None:
    """Converge the broker to the topology; a second apply does nothing and writes nothing.

    On a terminal it shows the plan and applies only after the answer 'yes' (--yes skips the question).
    `apply PLAN` applies a plan saved by `plan -o PLAN` exactly, or refuses in one line before any write.
    """
    from provisioner.cli import saved

    if saved.is_saved_plan(files):
        saved.refuse_flags_with_a_plan(prune=prune, migrate=migrate, force=force, ignore=bool(ignore))
        with ProgressBar("applying") as progress:

            def starting_saved(plan: Plan) -> None:
                _echo_plan(plan)
                progress.start(len(plan.changes))

            report = saved.apply_file(files[0], broker, workers, lock_timeout, progress.update, starting_saved)
        _report(report)
        return
    from provisioner.broker.live import read_live_soon
    from provisioner.topology import load

    endpoints, management = broker.endpoints, broker.management
    reading: list[LiveSoon] = []  # the broker exports the vhosts while the topology is still being checked
    desired = load(files, on_vhosts=lambda vhosts: reading.append(read_live_soon(management, vhosts)))
    _SECRETS.update(desired.accounts.passwords())
    from provisioner.apply import ApplyOptions, converge  # imported while the broker is still answering
    from provisioner.cli.confirm import Confirmation, asks
    from provisioner.live_state import ignoring

    options = ApplyOptions(prune, migrate, force, workers, lock_timeout, include_object=ignoring(ignore))
    live_soon = reading[0] if reading else None
    confirmation = Confirmation(asks(yes), _echo_plan, lambda plan: _echo_plan(plan, err=True))
    with ProgressBar("applying") as progress:

        def starting(plan: Plan) -> None:
            if not confirmation.shown(plan):
                _echo_plan(plan)
            progress.start(len(plan.changes))

        report = converge(desired, endpoints, management, options, progress.update, starting, live_soon, confirmation)
    _report(report)


def _report(report: ApplyReport) -> None:
    """The last line of an apply: what it did, or that there was nothing to do."""
    if report.plan.is_empty and report.plan.drift:
        say(
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
