"""Where a Celery app's tasks go, asked of Celery's own router, and which queues the broker then puts them in.

Celery is the oracle: each registered task is routed by ``app.amqp.router``
exactly as ``send_task`` routes it (task options, every form of
``task_routes``, ``task_default_*``), then the exchange and routing key it
would publish with are matched against the vhost's exchanges and bindings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from provisioner.topology.model import Binding, Exchange

ROUTING_OPTIONS = ("queue", "exchange", "routing_key", "exchange_type")
DEFAULT_EXCHANGE_TYPES = {"": "direct", "amq.direct": "direct", "amq.fanout": "fanout", "amq.topic": "topic"}
DEFAULT_EXCHANGE_TYPES |= {"amq.headers": "headers", "amq.match": "headers"}


@dataclass(frozen=True)
class Destination:
    """What Celery publishes a task with, and who decided it."""

    task: str
    exchange: str
    routing_key: str
    celery_queue: str | None  # the task_queues entry Celery chose (None: an exchange without a queue)
    router: str | None = None  # a router function or class that decided at publish time, if one did
    error: str | None = None  # what a router function raised when asked (it was then left out)
    unroutable: str | None = None  # why Celery itself cannot send the task (QueueNotFound...)
    declares: Any = None  # a kombu Queue the route names as an object, not from task_queues: Celery declares it


@dataclass(frozen=True)
class Bindings:
    """A vhost's exchanges and bindings, enough to say where a published message lands."""

    exchanges: dict[str, Exchange]
    bindings: tuple[Binding, ...]
    queues: frozenset[str]

    def landing(self, exchange: str, routing_key: str, headers: dict[str, Any]) -> list[str]:
        """The queues a message published to ``exchange`` with ``routing_key`` and ``headers`` reaches, sorted."""
        found: set[str] = set()
        self._route(exchange, routing_key, headers, found, set())
        return sorted(found)

    def has_exchange(self, exchange: str) -> bool:
        """Whether a publish to ``exchange`` finds it: the default exchange, amq.*, or one of the vhost's."""
        return exchange in DEFAULT_EXCHANGE_TYPES or exchange in self.exchanges

    def _route(self, exchange: str, key: str, headers: dict[str, Any], found: set[str], seen: set[str]) -> None:
        if exchange in seen:
            return
        seen.add(exchange)
        if exchange == "":
            if key in self.queues:
                found.add(key)
            return
        kind = self.exchanges[exchange].type if exchange in self.exchanges else DEFAULT_EXCHANGE_TYPES.get(exchange)
        matched = [b for b in self.bindings if b.source == exchange and _matches(kind, b, key, headers)]
        for binding in matched:
            if binding.destination_type == "queue":
                found.add(binding.destination)
            else:
                self._route(binding.destination, key, headers, found, seen)
        alternate = self.exchanges[exchange].arguments.get("alternate-exchange") if exchange in self.exchanges else None
        if not matched and isinstance(alternate, str):
            self._route(alternate, key, headers, found, seen)


def _matches(kind: str | None, binding: Binding, key: str, headers: dict[str, Any]) -> bool:
    """AMQP 0-9-1 matching of one binding, by exchange type (unknown plugin types match nothing known)."""
    if kind == "direct":
        return binding.routing_key == key
    if kind == "fanout":
        return True
    if kind == "topic":
        return topic_matches(binding.routing_key.split("."), key.split("."))
    if kind == "headers":
        wanted = {k: v for k, v in binding.arguments.items() if not k.startswith("x-")}
        mode = str(binding.arguments.get("x-match", "all"))
        hits = [k in headers and (headers[k] == v or v is None) for k, v in wanted.items()]
        return any(hits) if mode.startswith("any") else all(hits)
    return False


def topic_matches(pattern: list[str], words: list[str]) -> bool:
    """Whether a topic binding key (split on '.') matches a routing key: '*' one word, '#' zero or more."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, words[start:]) for start in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and topic_matches(rest, words[1:])


def destinations(app: Any, names: Iterable[str]) -> list[Destination]:
    """Each task as Celery routes it with no arguments: task options first, then task_routes, then defaults."""
    return [destination(app, name) for name in names]


def destination(app: Any, name: str, options: dict[str, Any] | None = None) -> Destination:
    """One task's route, by Celery's own Router; a router that raises is named and skipped."""
    from celery.app.routes import MapRoute, Router

    task = app.tasks.get(name)
    if options is None:
        exec_options = task._get_exec_options() if task is not None else {}
        options = {k: exec_options[k] for k in ROUTING_OPTIONS if exec_options.get(k) is not None}
    router = app.amqp.router
    decided, error = None, None
    routes = list(router.routes)
    for index, candidate in enumerate(routes):
        if isinstance(candidate, MapRoute):
            if _map_answers(candidate, name):
                break
            continue
        try:
            answer = router.query_router(candidate, name, (), {}, dict(options), task)
        except Exception as raised:  # a user's router may raise anything for arguments it did not expect
            error = f"{describe_router(candidate)} raised {type(raised).__name__}: {raised}"
            routes = routes[:index] + routes[index + 1 :]
            break
        if answer is not None:
            decided = describe_router(candidate)
            break
    try:
        chosen = Router(routes, router.queues, router.create_missing, app=app).route(dict(options), name, (), {}, task)
    except Exception as raised:  # QueueNotFound: the app itself cannot send this task
        return Destination(name, "", "", None, decided, error, f"{type(raised).__name__}: {raised}")
    exchange, routing_key, queue = publish_target(app, chosen)
    return Destination(name, exchange, routing_key, queue, decided, error, declares=declared_on_publish(app, chosen))


def _map_answers(table: Any, name: str) -> bool:
    """Whether a route table has an entry for ``name``; an entry Celery cannot read answers too, so that the
    route below raises as Celery's would (a route that is a bare kombu Queue: TypeError) and the task is named."""
    try:
        return table(name) is not None
    except Exception:  # what Celery raises for the entry, raised again by Router.route and reported there
        return True


def declared_on_publish(app: Any, options: dict[str, Any]) -> Any:
    """The kombu Queue of a route that is not one of the app's queues (a Queue object in a route or router answer).

    Celery declares such a queue, with its exchange and binding, each time it publishes there
    (``send_task_message``'s ``declare``), so the broker holds it once the app has sent a task.
    """
    from kombu import Queue
    from kombu.common import Broadcast

    queue = options.get("queue")
    if not isinstance(queue, Queue) or isinstance(queue, Broadcast) or app.amqp.queues.get(queue.name) is queue:
        return None
    return queue if queue.name not in app.amqp.queues else None


def publish_target(app: Any, options: dict[str, Any]) -> tuple[str, str, str | None]:
    """The exchange and routing key ``send_task_message`` publishes with (celery/app/amqp.py, same rules)."""
    queue: Any = options.get("queue")
    exchange = options.get("exchange")
    exchange = getattr(exchange, "name", exchange)
    routing_key = options.get("routing_key")
    exchange_type = options.get("exchange_type")
    if queue is None and exchange is None:
        queue = app.amqp.default_queue
    if exchange_type is None:
        exchange_type = queue.exchange.type if queue is not None else "direct"
    if (not exchange or not routing_key) and exchange_type == "direct":
        return "", str(queue.name if queue is not None else ""), getattr(queue, "name", None)
    if exchange is None:
        exchange = queue.exchange.name or app.amqp.default_exchange.name
        routing_key = routing_key or queue.routing_key or app.conf.task_default_routing_key
    return str(exchange), str(routing_key or ""), getattr(queue, "name", None)


def describe_router(router: Any) -> str:
    """A router as a reader finds it in the app: 'router module.function' or 'router string \"path\"'."""
    from celery.utils.functional import mlazy

    if isinstance(router, mlazy):
        target = getattr(router, "_fun", None)
        arguments = getattr(router, "_args", ())
        return f"router {arguments[0]!r}" if arguments else f"router {target!r}"
    target = router if callable(router) and hasattr(router, "__qualname__") else type(router)
    return f"router {getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
