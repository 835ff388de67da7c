"""What a config rendered by provisioner tells an export beyond routes: foreign consumers, run_on, retries.

An app configured from ``provision render`` carries ``provisioner_*`` settings;
they are turned back into ``consume: foreign``, ``run_on`` and ``retry``, so
export -> render -> export keeps them, and whatever cannot be restored is named.
"""

from __future__ import annotations

from typing import Any

from provisioner.export.document import Note, VhostExport
from provisioner.topology.model import Retry

RETRY_DEFAULTS = {name: getattr(Retry(), name) for name in ("max_retries", "delay", "backoff", "delay_max", "via")}
RETRY_DEFAULTS["jitter"] = Retry().jitter


def restore_provisioner_settings(
    app: Any, tasks: dict[str, dict[str, Any]], default_queue: str, vhost: VhostExport
) -> list[Note]:
    """Fold the rendered ``provisioner_*`` settings back into ``tasks``; a Note for each one that cannot be."""
    notes = _foreign(app, tasks, default_queue, vhost)
    notes += _retries(app, tasks)
    _without_retry_queues(app, tasks, vhost)
    return notes


def _foreign(app: Any, tasks: dict[str, dict[str, Any]], default_queue: str, vhost: VhostExport) -> list[Note]:
    notes = []
    consumers = app.conf.get("provisioner_foreign_consumers") or {}
    for queue, pattern in sorted(consumers.items()):
        if queue not in vhost.queues:
            notes.append(
                Note(
                    (),
                    f"foreign consumer of queue {queue!r} (task {pattern!r}) dropped: vhost "
                    f"{vhost.name!r} has no such queue",
                )
            )
            continue
        run_on = tasks.get(pattern, {}).get("queue", default_queue)
        spec: dict[str, Any] = {"queue": queue, "consume": "foreign"}
        if run_on != default_queue:
            spec["run_on"] = run_on
        tasks[pattern] = spec
    return notes


def _retries(app: Any, tasks: dict[str, dict[str, Any]]) -> list[Note]:
    notes = []
    for pattern, settings in sorted((app.conf.get("provisioner_task_retries") or {}).items()):
        unknown = sorted(set(settings) - set(RETRY_DEFAULTS)) if isinstance(settings, dict) else ["(not a mapping)"]
        if pattern not in tasks or unknown:
            why = "no route of the app names it" if pattern not in tasks else f"unknown settings {unknown}"
            notes.append(Note((), f"retry settings of task {pattern!r} dropped: {why}"))
            continue
        retry = {k: v for k, v in settings.items() if v != RETRY_DEFAULTS[k]}
        tasks[pattern]["retry"] = retry
    return notes


def _without_retry_queues(app: Any, tasks: dict[str, dict[str, Any]], vhost: VhostExport) -> None:
    """Leave out the retry queues ``retry: {via: broker}`` makes again, so they are not declared twice."""
    if not any(spec.get("retry", {}).get("via") == "broker" for spec in tasks.values()):
        return
    names = {str(n) for waits in (app.conf.get("provisioner_retry_queues") or {}).values() for n in waits.values()}
    queues = vhost.body.get("queues", {})
    for name in sorted(names & set(queues)):
        del queues[name]
        vhost.skipped += 1
