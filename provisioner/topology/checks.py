"""Meaning checks no schema can express: references, names, queue-type rules, dead-letter cycles."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from typing import Any

from provisioner.errors import Problem
from provisioner.kinds.exchange import EXCHANGE
from provisioner.kinds.policy import POLICY
from provisioner.kinds.queue import QUEUE
from provisioner.patterns import compiled
from provisioner.topology import broker_checks, readiness
from provisioner.topology.arguments import BY_POLICY_KEY, QUEUE_ARGUMENTS, table_value_problem, value_problem
from provisioner.topology.dead_letter_cycles import check_dead_letter_cycles
from provisioner.topology.expand import QUEUE_POLICY_PREFIX, Origin
from provisioner.topology.model import (
    LOCK_QUEUE,
    MIGRATE_SUFFIX,
    PROBE_SUFFIX,
    Binding,
    Exchange,
    Key,
    Policy,
    Queue,
    Topology,
    VHost,
)

MAX_NAME_BYTES = 255
BUILT_IN_EXCHANGES = frozenset(
    {"amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "amq.rabbitmq.trace"}
)
Check = Callable[[Topology, dict[Key, Origin]], Iterator[Problem]]


def meaning_problems(topology: Topology, origins: dict[Key, Origin]) -> list[Problem]:
    """Run every check; each yields problems located at the object that causes them."""
    return [problem for check in CHECKS for problem in check(topology, origins)]


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's category Cc, exactly


def plain_name(name: str) -> bool:
    """A name the broker keeps as written: no white space around it, no control character in it."""
    return name == name.strip() and _CONTROL.search(name) is None


def check_names(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Names fit the broker's 255-byte limit and stay out of the reserved ``amq.`` space."""
    named: tuple[VHost | Exchange | Queue | Policy, ...] = (
        *topology.vhosts,
        *topology.exchanges,
        *topology.queues,
        *topology.policies,
    )
    for resource in named:
        if not _surely_fine_name(resource):
            yield from _name_problems(resource, origins[resource.key])


_SHORT_ENOUGH = MAX_NAME_BYTES // 4  # UTF-8 takes at most 4 bytes a character


def _surely_fine_name(resource: VHost | Exchange | Queue | Policy) -> bool:
    """A quick test that a name has none of the problems _name_problems finds: most names pass it at C speed.

    A printable name has no control character (nor a lone surrogate, which UTF-8 cannot encode), and the only
    white space a printable string holds is ' '.
    """
    name = resource.name
    if not name.isprintable():
        return False
    if len(name) > _SHORT_ENOUGH and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return False
    if resource.kind not in (EXCHANGE.name, QUEUE.name):
        return True
    if name.startswith((" ", "amq.")) or name.endswith(" "):
        return False
    return resource.kind == EXCHANGE.name or not (name.endswith((MIGRATE_SUFFIX, PROBE_SUFFIX)) or name == LOCK_QUEUE)


def _name_problems(resource: VHost | Exchange | Queue | Policy, origin: Origin) -> Iterator[Problem]:
    if len(resource.name.encode("utf-8")) > MAX_NAME_BYTES:
        yield origin.problem(f"{resource.kind} name is longer than {MAX_NAME_BYTES} bytes (UTF-8)", at_key=True)
    if resource.kind in (EXCHANGE.name, QUEUE.name) and not plain_name(resource.name):
        yield origin.problem(
            f"{resource.kind} name {resource.name!r} has white space around it or a control character: "
            "the broker trims names, so it would hold another object than the topology names",
            at_key=True,
        )
    if resource.kind in (EXCHANGE.name, QUEUE.name) and resource.name.startswith("amq."):
        yield origin.problem(f"{resource.kind} names starting with 'amq.' are reserved by the broker", at_key=True)
    if resource.kind == QUEUE.name and (
        resource.name.endswith((MIGRATE_SUFFIX, PROBE_SUFFIX)) or resource.name == LOCK_QUEUE
    ):
        yield origin.problem(f"queue name {resource.name!r} is reserved by provisioner itself", at_key=True)


def check_references(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Bindings name known exchanges; tasks and the default queue name known queues."""
    exchanges = {(x.vhost, x.name) for x in topology.exchanges} | _external(topology)
    for binding in topology.bindings:
        origin = origins[binding.key]
        if (binding.vhost, binding.source) not in exchanges and binding.source not in BUILT_IN_EXCHANGES:
            yield origin.problem(
                f"exchange {binding.source!r} is not defined in vhost {binding.vhost!r} "
                f"(define it under exchanges, list it under external_exchanges, or use a built-in amq.* one)",
                "exchange",
            )
    vhosts = {v.name for v in topology.vhosts}
    celery = topology.celery
    celery_origin = origins.get(("celery",))
    if celery_origin is not None and celery.vhost not in vhosts:
        yield celery_origin.problem(f"celery vhost {celery.vhost!r} is not a vhost of the topology", "vhost")
    for route in topology.tasks:
        if topology.queue(celery.vhost, route.queue) is None:
            yield origins[("task", route.pattern)].problem(
                f"queue {route.queue!r} is not defined in vhost {celery.vhost!r}", "queue"
            )
        if route.run_on is not None and topology.queue(celery.vhost, route.run_on) is None:
            yield origins[("task", route.pattern)].problem(
                f"queue {route.run_on!r} is not defined in vhost {celery.vhost!r}", "run_on"
            )
    if celery_origin is not None and topology.queue(celery.vhost, celery.default_queue) is None:
        yield celery_origin.problem(
            f"default queue {celery.default_queue!r} is not defined in vhost {celery.vhost!r}", "default_queue"
        )


def check_external_exchanges(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """An exchange is either the topology's own or external, never both."""
    owned = {(x.vhost, x.name) for x in topology.exchanges}
    for external in topology.external_exchanges:
        if (external.vhost, external.name) in owned:
            yield origins[external.key].problem(
                f"exchange {external.name!r} is defined in vhost {external.vhost!r} (or by a dead_letter there); "
                f"an external exchange is one the topology does not define"
            )


def check_dead_letter_exchanges(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Dead letters sent to an exchange nobody declares are dropped: the exchange must be known."""
    known = {(x.vhost, x.name) for x in topology.exchanges} | _external(topology)

    def unknown(vhost: str, exchange: Any) -> bool:
        return (
            isinstance(exchange, str)
            and exchange != ""
            and exchange not in BUILT_IN_EXCHANGES
            and ((vhost, exchange) not in known)
        )

    def message(vhost: str, exchange: Any) -> str:
        return (
            f"dead-letter exchange {exchange!r} is not defined in vhost {vhost!r}: dead letters sent there are "
            "dropped (define it under exchanges, or list it under external_exchanges if it exists outside the topology)"
        )

    for queue in topology.queues:
        exchange = queue.arguments.get("x-dead-letter-exchange")
        if unknown(queue.vhost, exchange):
            origin = origins[queue.key]
            yield origin.problem(
                message(queue.vhost, exchange), *_written_at(origin, "dead_letter", "x-dead-letter-exchange")
            )
    for policy in topology.policies:
        exchange = policy.definition.get("dead-letter-exchange")
        if unknown(policy.vhost, exchange):
            origin = origins[policy.key]
            sub: tuple[str, ...] = (
                ("dead-letter-exchange",)
                if _is_queue_policy(policy.key, origins)
                else ("definition", "dead-letter-exchange")
            )
            if not origin.document.has([*origin.path, *sub]):
                sub = ()
            yield origin.problem(message(policy.vhost, exchange), *sub)


def _external(topology: Topology) -> set[tuple[str, str]]:
    return {(x.vhost, x.name) for x in topology.external_exchanges}


def check_queue_types(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """What quorum and stream queues refuse, said before the broker says PRECONDITION_FAILED."""
    for queue in topology.queues:
        if not queue.arguments and (queue.type == "classic" or (queue.durable and not queue.auto_delete)):
            continue  # nothing below can find a problem: most queues stop here, before the origin lookup
        origin = origins[queue.key]
        if queue.type in ("quorum", "stream"):
            if not queue.durable:
                yield origin.problem(f"{queue.type} queues are always durable", "durable")
            if queue.auto_delete:
                yield origin.problem(f"{queue.type} queues cannot be auto_delete", "auto_delete")
        yield from _refused_by_type(queue, origin)
        strategy = queue.arguments.get("x-dead-letter-strategy")
        if strategy == "at-least-once" and queue.arguments.get("x-overflow") != "reject-publish":
            yield origin.problem(
                "at-least-once dead-lettering needs overflow: reject-publish (the broker falls back to at-most-once)",
                "dead_letter_strategy",
            )


def _refused_by_type(queue: Queue, origin: Origin) -> Iterator[Problem]:
    """The known arguments the queue's type refuses (the argument table says which types take each)."""
    for name in queue.arguments:
        argument = QUEUE_ARGUMENTS.get(name)
        if argument is None or queue.type in argument.queue_types:
            continue
        if name == "x-dead-letter-routing-key" and "x-dead-letter-exchange" in queue.arguments:
            continue  # one dead-letter refusal is enough: it is said through x-dead-letter-exchange
        where = _written_at(origin, argument.friendly or name, name)
        yield origin.problem(f"{name} is not supported on {queue.type} queues", *where)


def _written_at(origin: Origin, friendly: str, argument: str) -> tuple[str, ...]:
    """The sub-path where the file sets an argument: its friendly field or its arguments entry."""
    if origin.document.has([*origin.path, friendly]):
        return (friendly,)
    if origin.document.has([*origin.path, "arguments", argument]):
        return ("arguments", argument)
    return (friendly,)


def check_policies(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """A queue's own settings policy is not shadowed by another policy."""
    own_by_vhost = _queues_with_own_policy(topology, origins)
    for policy in topology.policies:
        if _is_queue_policy(policy.key, origins) or policy.apply_to == "exchanges":
            continue
        pattern = compiled(policy.pattern)
        if pattern is None:
            continue  # broker_checks.py reports it
        for queue in own_by_vhost.get(policy.vhost, ()):
            if pattern.search(queue.name):
                yield origins[policy.key].problem(
                    f"policy also matches queue {queue.name!r}, whose 'policy' or 'dead_letter: {{via: policy}}' "
                    f"makes a policy of its own; the broker applies only one policy to a queue",
                    "pattern",
                )


def _queues_with_own_policy(topology: Topology, origins: dict[Key, Origin]) -> dict[str, list[Queue]]:
    """Per vhost, in topology order, the queues a policy of their own sets: a policy only reaches its vhost's."""
    own = {(p.vhost, p.name[len(QUEUE_POLICY_PREFIX) :]) for p in topology.policies if _is_queue_policy(p.key, origins)}
    by_vhost: dict[str, list[Queue]] = {}
    if own:
        for queue in topology.queues:
            if (queue.vhost, queue.name) in own:
                by_vhost.setdefault(queue.vhost, []).append(queue)
    return by_vhost


def _is_queue_policy(key: Key, origins: dict[Key, Origin]) -> bool:
    return origins[key].settings_of_queue is not None


def check_task_patterns(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Globs are globs Celery understands, and a task has one route to one queue."""
    for route in topology.tasks:
        if route.is_glob:
            try:
                re.compile(fnmatch.translate(route.pattern))
            except re.error as error:
                yield origins[("task", route.pattern)].problem(f"not a valid glob: {error}", at_key=True)
        if route.consume == "foreign" and route.is_glob:
            yield origins[("task", route.pattern)].problem(
                "consume: foreign hands messages to one task; name it exactly, not with a glob", "consume"
            )
    foreign_queues: dict[str, str] = {}
    for route in topology.tasks:
        if route.consume != "foreign":
            continue
        if route.queue in foreign_queues:
            yield origins[("task", route.pattern)].problem(
                f"queue {route.queue!r} already hands its messages to {foreign_queues[route.queue]!r}", "queue"
            )
        foreign_queues.setdefault(route.queue, route.pattern)
    for route in topology.tasks:
        if route.run_on is not None and route.consume != "foreign":
            yield origins[("task", route.pattern)].problem(
                "run_on is where a foreign message's task runs; a celery task runs on its queue", "run_on"
            )
        elif route.run_on is not None and route.run_on in foreign_queues:
            yield origins[("task", route.pattern)].problem(
                f"run_on {route.run_on!r} is a foreign queue; name a queue Celery workers consume", "run_on"
            )


def check_values(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Argument and policy values the broker and AMQP can carry, checked against the argument table."""
    for queue in topology.queues:  # the origin is looked up only for a problem: most queues have none
        for name, value in queue.arguments.items():
            argument = QUEUE_ARGUMENTS.get(name)
            problem = value_problem(value, argument)
            if problem:
                origin = origins[queue.key]
                where = _written_at(origin, argument.friendly if argument and argument.friendly else name, name)
                if name == "x-dead-letter-routing-key" and origin.document.has([*origin.path, "dead_letter"]):
                    where = ("dead_letter", "routing_key")
                yield origin.problem(f"{where[-1]} {problem}" if argument else f"{name}: {problem}", *where)
        if "x-dead-letter-routing-key" in queue.arguments and "x-dead-letter-exchange" not in queue.arguments:
            yield origins[queue.key].problem(
                "x-dead-letter-routing-key needs x-dead-letter-exchange (the broker refuses it alone)",
                "arguments",
                "x-dead-letter-routing-key",
            )
    resources: tuple[Exchange | Binding, ...] = (*topology.exchanges, *topology.bindings)
    for resource in resources:
        for name, value in resource.arguments.items():
            problem = table_value_problem(value)
            if problem:
                yield origins[resource.key].problem(f"{name}: {problem}", "arguments", name)
    for policy in topology.policies:
        origin = origins[policy.key]
        base = () if _is_queue_policy(policy.key, origins) else ("definition",)
        for name, value in policy.definition.items():
            argument = BY_POLICY_KEY.get(name)
            problem = value_problem(value, argument) if argument else table_value_problem(value)
            if problem:
                yield origin.problem(f"{name} {problem}" if argument else f"{name}: {problem}", *base, name)


def warn_upgrade_readiness(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Warn, at the line that sets it, about what RabbitMQ 4.x removes or denies (readiness.RULES)."""
    generated = {key for key, origin in origins.items() if origin.generated_by}
    for finding in readiness.findings(topology, exempt=generated):
        origin = origins[finding.key]
        if finding.key[0] == POLICY.name:
            base = () if _is_queue_policy(finding.key, origins) else ("definition",)
            sub = (*base, finding.setting) if origin.document.has([*origin.path, *base, finding.setting]) else ()
            yield origin.warning(f"{finding.setting}: {finding.why}", *sub, at_key=not sub)
        elif finding.setting == "durable":
            yield origin.warning(finding.why, "durable")
        elif finding.setting:
            known = QUEUE_ARGUMENTS.get(finding.setting)
            friendly = known.friendly if known and known.friendly else finding.setting
            where = _written_at(origin, friendly, finding.setting)
            yield origin.warning(f"{finding.setting} {finding.value}: {finding.why}", *where)
        else:
            yield origin.warning(finding.why, at_key=True)


CHECKS: tuple[Check, ...] = (
    check_names,
    check_references,
    check_external_exchanges,
    check_dead_letter_exchanges,
    check_queue_types,
    check_policies,
    check_dead_letter_cycles,
    check_task_patterns,
    check_values,
    *broker_checks.CHECKS,
    warn_upgrade_readiness,
)
