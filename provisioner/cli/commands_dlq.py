"""The `provision dlq` group: list, show, replay and purge the topology's dead-letter queues."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from provisioner.broker.clients import BrokerClients as Broker
from provisioner.cli.clients import broker_options
from provisioner.cli.group import main
from provisioner.cli.output import EXIT_ERROR, ProgressBar, reports_errors, say, say_document
from provisioner.errors import ProvisionerError, one_line

if TYPE_CHECKING:  # each command imports what it needs when it runs: `provision --version` stays fast
    from provisioner.topology.model import Topology


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
        say_document(json.dumps({"dead_letter_queues": [_inventory_json(row) for row in rows]}, indent=2) + "\n")
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
        say_document(
            json.dumps({"queue": found.name, "vhost": found.vhost, "messages": total, "shown": shown}, indent=2) + "\n"
        )
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
    with ProgressBar("replaying") as bar:
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
            management=management,
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
