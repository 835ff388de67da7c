"""Commands that compare the topology with the live broker: plan, drift, and apply, which converges it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from provisioner.broker.clients import BrokerClients as Broker
from provisioner.cli.clients import broker_options
from provisioner.cli.group import main
from provisioner.cli.output import _SECRETS, EXIT_CHANGES, EXIT_ERROR, ProgressBar, reports_errors, say
from provisioner.options import DEFAULT_LOCK_TIMEOUT, DEFAULT_WORKERS

if TYPE_CHECKING:  # each command imports what it needs when it runs: `provision --version` stays fast
    from provisioner.broker.live import LiveSoon, LiveVhost
    from provisioner.live_state import IncludeObject
    from provisioner.plan import Plan
    from provisioner.topology.model import Topology


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
    from provisioner.broker.live import read_live_soon
    from provisioner.topology import load

    endpoints, management = broker.endpoints, broker.management
    reading: list[LiveSoon] = []  # the broker exports the vhosts while the topology is still being checked
    desired = load(files, on_vhosts=lambda vhosts: reading.append(read_live_soon(management, vhosts)))
    _SECRETS.update(desired.accounts.passwords())
    from provisioner.apply import ApplyOptions, converge  # imported while the broker is still answering
    from provisioner.live_state import ignoring

    options = ApplyOptions(prune, migrate, force, workers, lock_timeout, include_object=ignoring(ignore))
    live_soon = reading[0] if reading else None
    with ProgressBar("applying") as progress:

        def starting(plan: Plan) -> None:
            _echo_plan(plan)
            progress.start(len(plan.changes))

        report = converge(desired, endpoints, management, options, progress.update, starting, live_soon)
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
