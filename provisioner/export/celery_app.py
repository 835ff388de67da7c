"""A Celery app's routing as a topology's ``tasks`` and ``celery`` sections, and where app and broker disagree."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.export.document import Note, VhostExport
from provisioner.topology.model import Queue, canonical_arguments


def load_app(spec: str) -> Any:
    """``module:attribute`` (or just ``module``, whose ``app`` or ``celery`` is taken) -> the Celery app."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `celery -A` finds the app's module
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module may raise anything on import
        raise ProvisionerError(
            f"cannot import {module_name!r} for --celery-app: {type(error).__name__}: {error}"
        ) from error
    for name in [attribute] if attribute else ["app", "celery"]:
        app = getattr(module, name, None)
        if app is not None and hasattr(app, "conf") and hasattr(app, "amqp"):
            return app
    raise ProvisionerError(f"--celery-app {spec!r}: no Celery app named {attribute or 'app'!r} in {module_name!r}")


def app_vhost(app: Any) -> str:
    """The vhost of the app's broker URL ('/' when it names none)."""
    url = str(app.conf.broker_url or "")
    path = url.split("://", 1)[-1].split("/", 1)
    return _unquote(path[1].split("?", 1)[0]) if len(path) > 1 and path[1].split("?", 1)[0] else "/"


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def celery_sections(app: Any, vhost: VhostExport) -> tuple[dict[str, Any], dict[str, Any], list[Note]]:
    """``tasks`` from task_routes, ``celery`` from task_default_queue; a Note for each disagreement with the broker."""
    notes = [note for queue in app.amqp.queues.values() for note in _compare_queue(queue, vhost)]
    tasks: dict[str, Any] = {}
    for pattern, queue_name, where in _routes(app.conf.task_routes, notes):
        if pattern in tasks:
            continue  # the first route wins, as in Celery
        tasks[pattern] = {"queue": queue_name}
        if queue_name not in vhost.queues:
            notes.append(
                Note(
                    ("tasks", pattern),
                    f"task route {where} goes to queue {queue_name!r}, which vhost {vhost.name!r} lacks",
                    True,
                )
            )
    default_queue = str(app.conf.task_default_queue)
    if default_queue not in vhost.queues:
        notes.append(
            Note(("celery",), f"the app's default queue {default_queue!r} does not exist in vhost {vhost.name!r}", True)
        )
    return tasks, {"default_queue": default_queue}, notes


def _routes(routes: Any, notes: list[Note]) -> list[tuple[str, str, str]]:
    """(pattern, queue, description) for every route a topology can say; a Note for every other one."""
    found: list[tuple[str, str, str]] = []
    tables = [] if routes is None else (list(routes) if isinstance(routes, (list, tuple)) else [routes])
    for table in tables:
        items: list[tuple[Any, Any]]
        if isinstance(table, dict):
            items = list(table.items())
        elif isinstance(table, (list, tuple)) and len(table) == 2:
            items = [tuple(table)]  # type: ignore[list-item]
        else:
            notes.append(Note((), f"task route {table!r} (a router function or class) cannot be expressed; left out"))
            continue
        for pattern, route in items:
            queue = _route_queue(route)
            if isinstance(pattern, re.Pattern) or not isinstance(pattern, str) or queue is None:
                notes.append(Note((), f"task route {pattern!r} -> {route!r} cannot be expressed as tasks:; left out"))
                continue
            found.append((pattern, queue, repr(pattern)))
    return found


def _route_queue(route: Any) -> str | None:
    """The queue name a route names: a string, a kombu Queue, or a dict with ``queue``."""
    if isinstance(route, str):
        return route
    if isinstance(route, dict):
        route = route.get("queue")
        return route if isinstance(route, str) else getattr(route, "name", None)
    return getattr(route, "name", None)


def _compare_queue(declared: Any, vhost: VhostExport) -> list[Note]:
    """The app's declaration of a queue against the broker's: what a worker would meet as PRECONDITION_FAILED."""
    from kombu.transport.base import to_rabbitmq_queue_arguments

    arguments = to_rabbitmq_queue_arguments(
        dict(declared.queue_arguments or {}),
        expires=declared.expires,
        message_ttl=declared.message_ttl,
        max_length=declared.max_length,
        max_length_bytes=declared.max_length_bytes,
        max_priority=declared.max_priority,
    )
    wanted = Queue(
        vhost.name,
        declared.name,
        str(arguments.get("x-queue-type", "classic")),
        durable=bool(declared.durable),
        auto_delete=bool(declared.auto_delete),
        arguments=canonical_arguments(arguments),
    )
    live = vhost.queues.get(declared.name)
    if live is None:
        return [Note(("celery",), f"the app's queue {declared.name!r} does not exist in vhost {vhost.name!r}", True)]
    differences = [
        f"{name} {getattr(wanted, name)!r} (broker: {getattr(live, name)!r})"
        for name in ("type", "durable", "auto_delete", "arguments")
        if getattr(wanted, name) != getattr(live, name)
    ]
    if not differences:
        return []
    return [
        Note(
            ("queues", declared.name),
            f"the app declares queue {declared.name!r} with {', '.join(differences)}: "
            f"its workers would fail with PRECONDITION_FAILED",
            True,
        )
    ]
