"""A Celery app's routing as a topology's ``tasks`` and ``celery`` sections, and where app and broker disagree."""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import sys
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.export.celery_declared import broadcast_exchanges, declared_queues, reconcile
from provisioner.export.celery_roundtrip import restore_provisioner_settings
from provisioner.export.celery_routes import (
    Bindings,
    Destination,
    declared_on_publish,
    describe_router,
    destination,
    publish_target,
)
from provisioner.export.document import Note, VhostExport
from provisioner.extras import require


def load_app(spec: str) -> Any:
    """``module:attribute`` (or just ``module``, whose ``app`` or ``celery`` is taken) -> the Celery app."""
    require("celery", "export --celery-app")
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


def import_task_modules(app: Any) -> None:
    """Import the modules the worker imports (``imports``, ``include``, autodiscovery) so every task is registered."""
    try:
        app.loader.import_default_modules()
    except Exception as error:  # the user's modules may raise anything on import
        raise ProvisionerError(
            f"cannot import the task modules of --celery-app: {type(error).__name__}: {error}"
        ) from error


def celery_sections(app: Any, vhost: VhostExport) -> tuple[dict[str, Any], dict[str, Any], list[Note]]:
    """``tasks`` and ``celery`` that send every registered task where the app sends it; a Note per doubt."""
    import_task_modules(app)
    _check_router(app)
    notes: list[Note] = []
    names = sorted(str(name) for name in app.tasks)
    sent = [destination(app, name) for name in names]  # first: routing makes the queues Celery would create
    unrouted = destination(app, "", {})
    static = _static_routes(app, notes)
    _add_declared_on_publish(app, [*sent, *static])
    notes += reconcile(app, vhost)
    where = Bindings(
        {x.name: x for x in vhost.topology.exchanges},
        vhost.topology.bindings,
        frozenset(q.name for q in vhost.topology.queues),
    )
    sent, static = _without_broadcasts(app, sent, notes), _without_broadcasts(app, static, notes)
    default_queue = _landing(unrouted, where, vhost.name, notes) or _fallback_default(app, vhost, notes)
    tasks: dict[str, dict[str, Any]] = {}
    for route in static:
        landed = _landing(route, where, vhost.name, notes)
        if landed is not None and route.task not in tasks:
            tasks[route.task] = {"queue": landed}
    routed = {found.task: _landing(found, where, vhost.name, notes) for found in sent}
    overrides = {
        name: {"queue": queue}
        for name, queue in routed.items()
        if queue is not None and queue != (_route_of(tasks, name) or default_queue)
    }
    tasks = {**overrides, **tasks}
    notes += restore_provisioner_settings(app, tasks, default_queue, vhost)
    notes += _unconsumed(app, tasks, default_queue, names)
    return tasks, {"default_queue": default_queue, **_runtime(app)}, notes


RUNTIME_REQUEST = "provisioner.celery.dead_letters.DeadLetteringRequest"  # what install(app) makes every task use


def _runtime(app: Any) -> dict[str, str]:
    """``runtime: provisioner`` when the app module called provisioner.celery.install(app): its requeues are bounded."""
    request = getattr(app.Task, "Request", None)
    named = f"{getattr(request, '__module__', '')}.{getattr(request, '__qualname__', '')}"
    return {"runtime": "provisioner"} if named == RUNTIME_REQUEST else {}


def _add_declared_on_publish(app: Any, found: list[Destination]) -> None:
    """Queues routes name as kombu Queue objects join the app's queues: Celery declares them when it publishes."""
    for route in found:
        if route.declares is not None and route.declares.name not in app.amqp.queues:
            app.amqp.queues[route.declares.name] = route.declares


def _fallback_default(app: Any, vhost: VhostExport, notes: list[Note]) -> str:
    """The default queue when unrouted tasks land nowhere: the app's own if the vhost has it, else its first queue."""
    named = str(app.conf.task_default_queue)
    if named in vhost.queues or not app.amqp.queues:
        return named
    chosen = sorted(app.amqp.queues)[0]
    message = (
        f"the app's default queue {named!r} is in neither task_queues nor vhost {vhost.name!r}, so Celery cannot "
        f"send an unrouted task; celery.default_queue is {chosen!r} (a topology needs one): change it as you mean it"
    )
    notes.append(Note(("celery",), message))
    return chosen


def _check_router(app: Any) -> None:
    """Celery's router of the app, built once here so that settings Celery cannot read are one clear line."""
    try:
        router = app.amqp.router
        for table in router.routes:
            getattr(table, "map", None)
    except Exception as error:  # Celery raises what the settings make it raise (ValueError, ImportError...)
        hint = ""
        if isinstance(app.conf.task_routes, list) and all(isinstance(r, tuple) for r in app.conf.task_routes):
            hint = " (a list of (pattern, route) pairs goes inside a tuple: task_routes = ([...],))"
        raise ProvisionerError(
            f"Celery cannot read the app's task_routes: {type(error).__name__}: {error}{hint}"
        ) from error


def _route_of(tasks: dict[str, Any], name: str) -> str | None:
    """Where the rendered ``task_routes`` (one dict, as render writes it) sends ``name``."""
    from celery.app.routes import MapRoute

    route = MapRoute([(pattern, {"queue": spec["queue"]}) for pattern, spec in tasks.items()])(name)
    return None if route is None else str(route["queue"])


def _without_broadcasts(app: Any, found: list[Destination], notes: list[Note]) -> list[Destination]:
    """The destinations that are not a broadcast to every worker; a Note for each task left out so."""
    broadcast = broadcast_exchanges(app)
    kept = []
    said = {note.path for note in notes}
    for route in found:
        if route.exchange not in broadcast:
            kept.append(route)
            continue
        if ("tasks", route.task) in said:
            continue
        said.add(("tasks", route.task))
        notes.append(
            Note(
                ("tasks", route.task),
                f"task {route.task!r} is broadcast to every worker (exchange {route.exchange!r}, the "
                f"app's Broadcast queue {broadcast[route.exchange]!r}): a topology routes a task to one "
                "queue, so it is left out of tasks; keep its route and the Broadcast queue in the app (the "
                "rendered config routes and consumes neither)",
                True,
            )
        )
    return kept


def _landing(found: Destination, where: Bindings, vhost: str, notes: list[Note]) -> str | None:
    """The one queue a task's messages land in (Celery's own queue first); a Note when none or several."""
    label = f"task {found.task!r}" if found.task else "an unrouted task"
    path = ("tasks", found.task) if found.task else ("celery",)
    if found.error is not None:
        notes.append(Note(path, f"{label}: {found.error} when asked with no arguments; routed without it"))
    if found.unroutable is not None:
        if not found.task.startswith("celery."):  # Celery's own tasks go where unrouted ones go: said once
            message = f"{label} cannot be sent by the app itself ({found.unroutable}); left out"
            notes.append(Note(path, message, bool(found.task)))
        return None
    if found.router is not None:
        notes.append(
            Note(
                path,
                f"{label} is routed at publish time by {found.router}: exported where it sends it "
                "with no arguments; other arguments may send it elsewhere",
            )
        )
    queues = where.landing(found.exchange, found.routing_key, {"task": found.task, "lang": "py"})
    if not queues:
        outcome = (
            "which reaches no queue in vhost {vhost!r}: the broker drops it"
            if where.has_exchange(found.exchange)
            else "which vhost {vhost!r} does not hold and the app does not declare: the broker refuses the "
            "publish (NOT_FOUND, which also closes the publishing channel)"
        ).format(vhost=vhost)
        message = f"{label} is published to exchange {found.exchange!r} with routing key {found.routing_key!r}, "
        notes.append(Note((), message + outcome))
        return None
    chosen = found.celery_queue if found.celery_queue in queues else queues[0]
    if len(queues) > 1:
        others = ", ".join(repr(q) for q in queues if q != chosen)
        notes.append(
            Note(
                path,
                f"{label} also reaches {others} (exchange {found.exchange!r}, key "
                f"{found.routing_key!r}); exported to {chosen!r} only",
            )
        )
    return chosen


def _static_routes(app: Any, notes: list[Note]) -> list[Destination]:
    """Names and globs of every route table (dict or list of pairs), in Celery's order; regexes are noted."""
    from celery.app.routes import MapRoute

    found: list[Destination] = []
    for table in app.amqp.router.routes:
        if not isinstance(table, MapRoute):
            continue
        entries = list(table.map.items())
        for regex, route in table.patterns.items():
            glob = glob_of(regex.pattern)
            if glob is not None:
                entries.append((glob, route))
                continue
            message = (
                f"task route {regex.pattern!r} is a regular expression, which tasks: cannot hold: "
                "the registered tasks it routes are exported by name, later ones are not"
            )
            notes.append(Note((), message))
        found += [d for pattern, route in entries if (d := _route_destination(app, pattern, route, notes))]
    return found


def _route_destination(app: Any, pattern: str, route: Any, notes: list[Note]) -> Destination | None:
    """Where one route entry sends a task, by Celery's Router with that entry alone."""
    from celery.app.routes import MapRoute, Router

    router = app.amqp.router
    try:
        options = Router([MapRoute([(pattern, route)])], router.queues, router.create_missing, app=app).route(
            {}, pattern
        )
    except Exception as error:  # QueueNotFound and the like: the app cannot send these either
        notes.append(Note((), f"task route {pattern!r}: {type(error).__name__}: {error}"))
        return None
    exchange, key, queue = publish_target(app, options)
    return Destination(pattern, exchange, key, queue, declares=declared_on_publish(app, options))


GLOB_PARTS = re.compile(r"\\(.)|\.\*|\.|(\[[^\]]*\])|(.)", re.DOTALL)


def glob_of(regex: str) -> str | None:
    """The glob Celery translated into ``regex`` (fnmatch.translate), or None for a regex of the user's own."""
    prefix, suffix = "(?s:", ")\\Z"
    if not (regex.startswith(prefix) and regex.endswith(suffix)):
        return None
    glob = "".join(_glob_part(m) for m in GLOB_PARTS.finditer(regex[len(prefix) : -len(suffix)]))
    return glob if "*" in glob and fnmatch.translate(glob) == regex else None


def _glob_part(match: re.Match[str]) -> str:
    escaped, bracket, plain = match.group(1), match.group(2), match.group(3)
    if escaped is not None:
        return escaped
    if bracket is not None:
        return bracket
    if plain is not None:
        return plain
    return "*" if match.group(0) == ".*" else "?"


def _unconsumed(app: Any, tasks: dict[str, Any], default_queue: str, names: list[str]) -> list[Note]:
    """The app's queues no exported task goes to: no worker of the rendered config consumes them."""
    from celery.app.routes import MapRoute

    routers = [describe_router(r) for r in app.amqp.router.routes if not isinstance(r, MapRoute)]
    targets = {spec.get("run_on") or spec["queue"] for spec in tasks.values()} | {default_queue}
    broadcast = set(broadcast_exchanges(app))  # said once, with their exchange (celery_declared)
    declared = {name for name, queue in declared_queues(app).items() if queue.exchange.name not in broadcast}
    notes = []
    for name in sorted(declared - targets):
        why = (
            f"{', '.join(routers)} may send tasks there at publish time"
            if routers
            else f"none of the {len(names)} registered tasks is routed there"
        )
        notes.append(
            Note(
                ("queues", name),
                f"queue {name!r} is in the app's task_queues but no exported task goes "
                f"there ({why}): the rendered config has no worker for it",
            )
        )
    return notes
