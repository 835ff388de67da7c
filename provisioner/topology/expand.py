"""Turn schema-valid documents into model objects: defaults filled, friendly fields turned
into x-arguments, ``dead_letter`` and ``policy`` shorthands expanded.

Every object remembers where in which file it came from (``Origins``), so the
meaning checks can point at the line that made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.errors import Problem
from provisioner.kinds.binding import BINDING
from provisioner.kinds.queue import QUEUE
from provisioner.kinds.vhost import VHOST
from provisioner.topology.documents import DEFAULT_VHOST, Document, vhost_bodies
from provisioner.topology.model import (
    QUEUE_ARGUMENT_NAMES,
    Binding,
    CelerySettings,
    DeadLetter,
    Exchange,
    ExternalExchange,
    Key,
    Policy,
    Queue,
    Resource,
    Retry,
    RetryQueue,
    TaskRoute,
    Topology,
    VHost,
    canonical_arguments,
    canonical_definition,
)
from provisioner.topology.read_accounts import AccountsReader

DEFAULT_DEAD_LETTER_SUFFIX = "dead"
RETRY_QUEUE_INFIX = "retry"
MAX_TTL_MS = 2**32 - 1  # the broker's limit for x-message-ttl
QUEUE_POLICY_PREFIX = "provisioner."


@dataclass(frozen=True, slots=True)  # one per object: no __dict__
class Origin:
    """Where an object was written: the file and the path of its definition."""

    document: Document
    path: tuple[Any, ...]
    generated_by: str = ""  # "dead_letter of queue X" for expansion products
    settings_of_queue: str | None = None  # the queue whose own settings policy this is (``policy:``)

    def problem(self, message: str, *sub: Any, at_key: bool = False) -> Problem:
        return self.document.problem([*self.path, *sub], message, at_key=at_key)

    def warning(self, message: str, *sub: Any, at_key: bool = False) -> Problem:
        return replace(self.problem(message, *sub, at_key=at_key), severity="warning")

    def where(self) -> str:
        mark = self.document.locate_key(self.path)
        return f"{self.document.file}:{mark.line}"


@dataclass
class Expansion:
    """The objects being built, their origins, and what went wrong on the way."""

    objects: dict[Key, Resource] = field(default_factory=dict)
    origins: dict[Key, Origin] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    tasks: list[tuple[TaskRoute, Origin]] = field(default_factory=list)
    celery: list[tuple[dict[str, Any], Origin]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    written: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (vhost, kind) -> names in the files
    external: dict[Key, ExternalExchange] = field(default_factory=dict)  # external_exchanges entries

    def add(self, resource: Resource, origin: Origin) -> None:
        """Add an object once; an identical expansion product may be added again (shared DLX)."""
        key = resource.key
        existing = self.objects.get(key)
        if existing is None:
            self.objects[key] = resource
            self.origins[key] = origin
            return
        first = self.origins[key]
        if resource.kind == BINDING.name or (existing == resource and origin.generated_by and first.generated_by):
            return  # a binding's content is its identity: the same binding twice is one binding
        how = f" (by {origin.generated_by or first.generated_by})" if origin.generated_by or first.generated_by else ""
        what = f"{resource.kind} {_name_of(resource)!r} in vhost {resource.vhost!r}"
        self.problems.append(origin.problem(f"{what} is defined twice{how}; first at {first.where()}", at_key=True))


def _name_of(resource: Resource) -> str:
    return resource.name


def expand_documents(documents: list[Document]) -> tuple[Topology, dict[Key, Origin], list[Problem]]:
    """Expand every document into one Topology; problems of expansion come back beside it."""
    expansion = Expansion()
    for document in documents:
        for vhost, body, _ in vhost_bodies(document):
            for kind in ("exchanges", "queues", "external_exchanges"):
                expansion.written.setdefault((vhost, kind), set()).update(body.get(kind) or {})
    accounts = AccountsReader()
    for document in documents:
        _expand_document(document, expansion)
        accounts.add_document(document, list(vhost_bodies(document)))
    expansion.problems.extend(accounts.problems)
    celery = _celery_settings(documents, expansion)
    retry_queues = _retry_queues(celery, expansion)
    by_kind: dict[str, list[Any]] = {"vhost": [], "exchange": [], "queue": [], "binding": [], "policy": []}
    for resource in expansion.objects.values():
        by_kind[resource.kind].append(resource)
    topology = Topology(
        vhosts=tuple(sorted(by_kind["vhost"], key=lambda v: v.key)),
        exchanges=tuple(by_kind["exchange"]),
        queues=tuple(by_kind["queue"]),
        bindings=tuple(by_kind["binding"]),
        policies=tuple(by_kind["policy"]),
        external_exchanges=tuple(expansion.external[key] for key in sorted(expansion.external)),
        dead_letters=tuple(expansion.dead_letters),
        retry_queues=retry_queues,
        tasks=tuple(route for route, _ in expansion.tasks),
        celery=celery,
        sources=tuple(d.file for d in documents),
        accounts=accounts.accounts(),
    )
    origins = dict(expansion.origins)
    for route, origin in expansion.tasks:
        origins[("task", route.pattern)] = origin
    if expansion.celery:
        origins[("celery",)] = expansion.celery[0][1]
    return topology, origins, expansion.problems


def _expand_document(document: Document, expansion: Expansion) -> None:
    data = document.data
    if "vhosts" in data:
        for clash in ("vhost", "exchanges", "queues", "policies", "external_exchanges"):
            if clash in data:
                expansion.problems.append(
                    document.problem(
                        [clash], f"'{clash}' cannot stand beside 'vhosts'; move it under a vhost", at_key=True
                    )
                )
    for vhost, body, base in vhost_bodies(document):
        origin = Origin(document, base or (("vhost",) if "vhost" in data else ()))
        if (VHOST.name, vhost) not in expansion.objects:
            expansion.add(VHost(vhost), origin)
        for name, spec in (body.get("exchanges") or {}).items():
            _expand_exchange(vhost, name, spec, Origin(document, (*base, "exchanges", name)), expansion)
        for name, spec in (body.get("queues") or {}).items():
            _expand_queue(vhost, name, spec or {}, Origin(document, (*base, "queues", name)), expansion)
        for name, spec in (body.get("policies") or {}).items():
            policy = Policy(
                vhost=vhost,
                name=name,
                pattern=spec["pattern"],
                definition=canonical_definition(spec["definition"]),
                apply_to=spec.get("apply_to", "queues"),
                priority=spec.get("priority", 0),
            )
            expansion.add(policy, Origin(document, (*base, "policies", name)))
        for index, name in enumerate(body.get("external_exchanges") or []):
            _add_external(
                ExternalExchange(vhost, name), Origin(document, (*base, "external_exchanges", index)), expansion
            )
    for pattern, spec in (data.get("tasks") or {}).items():
        retry = spec.get("retry")
        route = TaskRoute(
            pattern=pattern,
            queue=spec["queue"],
            consume=spec.get("consume", "celery"),
            retry=Retry(**retry) if retry is not None else None,
            run_on=spec.get("run_on"),
        )
        expansion.tasks.append((route, Origin(document, ("tasks", pattern))))
    if "celery" in data:
        expansion.celery.append((dict(data["celery"] or {}), Origin(document, ("celery",))))


def _add_external(exchange: ExternalExchange, origin: Origin, expansion: Expansion) -> None:
    """Remember an exchange the topology uses but does not own; listed once per vhost."""
    first = expansion.origins.get(exchange.key)
    if first is not None:
        message = (
            f"external exchange {exchange.name!r} in vhost {exchange.vhost!r} is listed twice; first at {first.where()}"
        )
        expansion.problems.append(origin.problem(message))
        return
    expansion.external[exchange.key] = exchange
    expansion.origins[exchange.key] = origin


def _expand_exchange(vhost: str, name: str, spec: dict[str, Any], origin: Origin, expansion: Expansion) -> None:
    exchange = Exchange(
        vhost=vhost,
        name=name,
        type=spec["type"],
        durable=spec.get("durable", True),
        auto_delete=spec.get("auto_delete", False),
        internal=spec.get("internal", False),
        arguments=canonical_arguments(spec.get("arguments")),
    )
    expansion.add(exchange, origin)
    for index, binding in enumerate(spec.get("bindings") or []):
        _add_binding(
            vhost, name, "exchange", binding, Origin(origin.document, (*origin.path, "bindings", index)), expansion
        )


def _add_binding(
    vhost: str, destination: str, destination_type: str, spec: dict[str, Any], origin: Origin, expansion: Expansion
) -> Binding:
    binding = Binding(
        vhost=vhost,
        source=spec["exchange"],
        destination=destination,
        destination_type=destination_type,
        routing_key=spec.get("routing_key", ""),
        arguments=canonical_arguments(spec.get("arguments")),
    )
    expansion.add(binding, origin)
    return binding


# A stream spells some settings its own way: the broker refuses a stream with the quorum queue's argument.
STREAM_SPELLINGS = {"x-quorum-initial-group-size": "x-initial-cluster-size"}


def queue_arguments(spec: dict[str, Any], origin: Origin, problems: list[Problem]) -> dict[str, Any]:
    """The queue's x-arguments: ``arguments`` merged with the friendly fields (never both for one)."""
    arguments = dict(spec.get("arguments") or {})
    if "x-queue-type" in arguments:
        problems.append(origin.problem("x-queue-type belongs in the queue's 'type' field", "arguments", "x-queue-type"))
        arguments.pop("x-queue-type")
    if spec.keys().isdisjoint(QUEUE_ARGUMENT_NAMES):
        return arguments  # most queues set none of the friendly fields
    for friendly, x_name in QUEUE_ARGUMENT_NAMES.items():
        if friendly not in spec:
            continue
        if spec.get("type") == "stream":
            x_name = STREAM_SPELLINGS.get(x_name, x_name)
        if x_name in arguments:
            problems.append(origin.problem(f"{friendly} and arguments.{x_name} say the same thing; keep one", friendly))
        arguments[x_name] = spec[friendly]
    return arguments


def _expand_queue(vhost: str, name: str, spec: dict[str, Any], origin: Origin, expansion: Expansion) -> None:
    queue_type = spec.get("type", "classic")
    arguments = queue_arguments(spec, origin, expansion.problems)
    bindings = [
        _add_binding(vhost, name, "queue", b, Origin(origin.document, (*origin.path, "bindings", i)), expansion)
        for i, b in enumerate(spec.get("bindings") or [])
    ]
    policy_definition = dict(spec.get("policy") or {})
    dead_letter = _dead_letter(vhost, name, queue_type, spec.get("dead_letter", False), bindings, origin, expansion)
    if dead_letter is not None:
        settings = {"dead-letter-exchange": dead_letter.exchange, "dead-letter-routing-key": dead_letter.routing_key}
        if dead_letter.via == "policy":
            policy_definition.update(settings)
        else:
            for key in settings:
                if f"x-{key}" in arguments:
                    expansion.problems.append(
                        origin.problem(
                            f"dead_letter and arguments.x-{key} both set dead-lettering; keep one", "dead_letter"
                        )
                    )
            arguments.update({f"x-{key}": value for key, value in settings.items()})
    queue = Queue(
        vhost=vhost,
        name=name,
        type=queue_type,
        durable=spec.get("durable", True),
        auto_delete=spec.get("auto_delete", False),
        arguments=canonical_arguments(arguments),
    )
    expansion.add(queue, origin)
    if policy_definition:
        policy = Policy(
            vhost=vhost,
            name=f"{QUEUE_POLICY_PREFIX}{name}",
            pattern=f"^{re.escape(name)}$",
            definition=canonical_definition(policy_definition),
            apply_to="queues",
        )
        expansion.add(
            policy,
            Origin(origin.document, (*origin.path, "policy"), f"the settings policy of queue {name!r}", name),
        )


def _dead_letter(
    vhost: str,
    name: str,
    queue_type: str,
    setting: bool | dict[str, Any],
    bindings: list[Binding],
    origin: Origin,
    expansion: Expansion,
) -> DeadLetter | None:
    """Expand ``dead_letter``: the DeadLetter record plus the exchange, queue and binding it implies.

    Names default as the seed's celery_dlq.py makes them, so a broker it set up
    is already in the desired state. An exchange or queue named explicitly and
    defined elsewhere in the files is referenced, not generated.
    """
    if setting is False:
        return None
    options = setting if isinstance(setting, dict) else {}
    suffix = options.get("suffix", DEFAULT_DEAD_LETTER_SUFFIX)
    key = bindings[0].routing_key if bindings and bindings[0].routing_key else name
    dead_letter = DeadLetter(
        vhost=vhost,
        queue=name,
        exchange=options.get("exchange", f"{name}.{suffix}"),
        routing_key=options.get("routing_key", f"{key}.{suffix}"),
        dead_letter_queue=options.get("queue", f"{name}.{suffix}"),
        via=options.get("via", "arguments"),
    )
    expansion.dead_letters.append(dead_letter)
    made_by = f"dead_letter of queue {name!r}"
    here = Origin(origin.document, (*origin.path, "dead_letter"), made_by)
    written = expansion.written  # looked up, never merged: a union per queue grew with the file's exchanges
    if "exchange" not in options or not any(
        options["exchange"] in written.get((vhost, kind), ()) for kind in ("exchanges", "external_exchanges")
    ):
        expansion.add(Exchange(vhost, dead_letter.exchange, "direct"), here)
    if "queue" not in options or options["queue"] not in expansion.written.get((vhost, "queues"), ()):
        dlq_type = options.get("queue_type", "quorum" if queue_type == "quorum" else "classic")
        expansion.add(Queue(vhost, dead_letter.dead_letter_queue, dlq_type), here)
    expansion.add(
        Binding(vhost, dead_letter.exchange, dead_letter.dead_letter_queue, "queue", dead_letter.routing_key), here
    )
    return dead_letter


def _celery_settings(documents: list[Document], expansion: Expansion) -> CelerySettings:
    """One ``celery`` section for all files; its vhost defaults to the only (or default) vhost."""
    if len(expansion.celery) > 1:
        (_, first), *rest = expansion.celery
        for _, origin in rest:
            expansion.problems.append(
                origin.problem(f"a second 'celery' section; the first is at {first.where()}", at_key=True)
            )
    section = expansion.celery[0][0] if expansion.celery else {}
    vhosts = sorted({k[1] for k in expansion.objects if k[0] == VHOST.name})
    default_vhost = DEFAULT_VHOST if DEFAULT_VHOST in vhosts or not vhosts else vhosts[0]
    return CelerySettings(
        vhost=section.get("vhost", default_vhost),
        default_queue=section.get("default_queue", "celery"),
        runtime=section.get("runtime"),
    )


def _retry_queues(celery: CelerySettings, expansion: Expansion) -> tuple[RetryQueue, ...]:
    """Expand ``retry: {via: broker}``: one TTL queue per distinct wait, dead-lettering back to the work queue.

    The work queue is where the task's Celery messages run: the task's queue,
    or for foreign tasks their ``run_on`` queue or the default queue (their messages are handed over there).
    """
    found: dict[tuple[str, int], RetryQueue] = {}
    for route, origin in expansion.tasks:
        if route.retry is None or route.retry.via != "broker":
            continue
        work_name = route.work_queue(celery.default_queue)
        work = expansion.objects.get((QUEUE.name, celery.vhost, work_name))
        if not isinstance(work, Queue):
            continue  # the reference check reports the missing queue
        here = Origin(origin.document, (*origin.path, "retry"), f"the broker retries of task {route.pattern!r}")
        if work.type == "stream":
            expansion.problems.append(
                here.problem(f"broker retries need a classic or quorum queue; {work_name!r} is a stream", "via")
            )
            continue
        if route.retry.jitter:
            expansion.problems.append(
                here.problem("a broker retry waits exactly its retry queue's TTL; jitter needs via: worker", "jitter")
            )
            continue
        waits = route.retry.waits_ms()
        if waits and waits[-1] > MAX_TTL_MS:
            expansion.problems.append(
                here.problem(f"a broker retry waits at most {MAX_TTL_MS // 1000} s; lower delay_max", "delay_max")
            )
            continue
        for wait in waits:
            name = f"{work_name}.{RETRY_QUEUE_INFIX}.{_wait_label(wait)}"
            arguments = {"x-message-ttl": wait, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": work_name}
            queue_type = "quorum" if work.type == "quorum" else "classic"
            expansion.add(Queue(celery.vhost, name, queue_type, arguments=canonical_arguments(arguments)), here)
            found[(work_name, wait)] = RetryQueue(celery.vhost, work_name, wait, name)
    return tuple(found[key] for key in sorted(found))


def _wait_label(wait_ms: int) -> str:
    """``2s`` for whole seconds, ``1500ms`` otherwise: readable queue names that never collide."""
    return f"{wait_ms // 1000}s" if wait_ms % 1000 == 0 else f"{wait_ms}ms"
