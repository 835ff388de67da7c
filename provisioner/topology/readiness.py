"""Pure: what RabbitMQ 4.x removes, ignores or will deny, found in a topology's queues and policies. No I/O.

One table of rules serves both sides: ``validate`` runs it over the desired
topology (warnings at the line that writes the setting), ``plan`` over the live
broker's objects in the managed vhosts, so a team can check a 3.x broker before
upgrading. A rule names a queue argument and/or a policy key; a finding says
which object and which setting, and why. Each rule's ``outcomes`` say from which
version the broker refuses or ignores the setting (checked on 3.10.8, 4.0.5 and
4.3.6 in tests/test_readiness_broker.py); topology/verdicts.py turns them into
what one broker version does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from provisioner.kinds.queue import QUEUE
from provisioner.topology.model import Key, OperatorPolicy, Policy, Queue, Topology
from provisioner.topology.policies import PolicySet, effective

# The broker's classic mirroring keys (rabbit_mirror_queue_misc): all refused by a 4.0 policy.
MIRRORING_KEYS = frozenset(
    {
        "ha-mode",
        "ha-params",
        "ha-sync-mode",
        "ha-sync-batch-size",
        "ha-promote-on-shutdown",
        "ha-promote-on-failure",
    }
)


Version = tuple[int, int]
PLACES = frozenset({"argument", "policy", "operator policy", "queue"})


@dataclass(frozen=True)
class Outcome:
    """From ``since`` on, the broker ``effect``s the setting where it is written in one of ``places``.

    ``effect`` is "refuses" or "ignores"; with ``feature`` (a deprecated feature)
    it refuses only where that feature is denied.
    """

    since: Version
    effect: str
    places: frozenset[str] = PLACES
    feature: str = ""


@dataclass(frozen=True)
class Rule:
    """One thing 4.x changes: the queue argument and policy key that use it, and what happens to them."""

    name: str
    argument: str | None
    policy_key: str | None
    why: str
    applies: Callable[[Any], bool] = lambda value: True
    outcomes: tuple[Outcome, ...] = ()  # latest first
    queue_type: str | None = None  # the argument matters only on queues of this type


_POLICIES = frozenset({"policy", "operator policy"})
RULES: tuple[Rule, ...] = (
    Rule(
        "classic_queue_mirroring",
        None,
        "ha-*",
        "classic queue mirroring is removed in RabbitMQ 4.0, which refuses the policy; use quorum queues",
        outcomes=(Outcome((4, 0), "refuses"),),
    ),
    Rule(
        "queue_mode",
        "x-queue-mode",
        "queue-mode",
        "lazy mode has no effect since RabbitMQ 3.12 and 4.0 refuses it in operator policies; remove it",
        outcomes=(
            Outcome((4, 0), "refuses", frozenset({"operator policy"})),
            Outcome((3, 12), "ignores"),
        ),
    ),
    Rule(
        "queue_version_1",
        "x-queue-version",
        "queue-version",
        "classic queue storage v1 is removed in RabbitMQ 4.3, which refuses it; remove it (v2 is the default)",
        lambda value: str(value).strip() == "1",
        outcomes=(Outcome((4, 3), "refuses", frozenset({"argument"})), Outcome((4, 3), "ignores", _POLICIES)),
    ),
    Rule(
        "queue_master_locator",
        "x-queue-master-locator",
        "queue-master-locator",
        "a deprecated feature (queue_master_locator): RabbitMQ 4.x refuses it when deprecated features are "
        "denied, 4.3 by default; use x-queue-leader-locator",
        outcomes=(Outcome((4, 0), "refuses", feature="queue_master_locator"),),
    ),
    Rule(
        "classic_consumer_timeout",
        "x-consumer-timeout",
        "consumer-timeout",
        "consumer timeouts no longer apply to classic queues from RabbitMQ 4.3, which refuses x-consumer-timeout "
        "on them and ignores the policy key; use a quorum queue where a stuck consumer must lose its messages",
        outcomes=(Outcome((4, 3), "refuses", frozenset({"argument"})), Outcome((4, 3), "ignores", _POLICIES)),
        queue_type="classic",
    ),
)
TRANSIENT_WHY = (
    "a non-durable queue: RabbitMQ 4.x refuses it when deprecated features are denied "
    "(transient_nonexcl_queues); make it durable"
)
TRANSIENT = Rule(
    "transient_nonexcl_queues",
    None,
    None,
    TRANSIENT_WHY,
    outcomes=(Outcome((4, 0), "refuses", feature="transient_nonexcl_queues"),),
)
DELIVERY_LIMIT_WHY = (
    "quorum queue without delivery_limit and without dead-lettering: RabbitMQ 4.x gives it a delivery limit "
    "of 20 and then drops the message (set delivery_limit, or dead_letter)"
)
REQUEUE_WHY = (
    "a quorum queue Celery consumes, with a delivery limit: from RabbitMQ 4.3 the limit counts failed deliveries "
    "only (a worker's channel gone), not requeues, so a message Celery requeues (Reject(requeue=True), a "
    "dead letter that cannot be published) is delivered again without end (workers that call "
    "provisioner.celery.install(app) requeue a task at most once: say so with celery: {runtime: provisioner})"
)
REQUEUE = Rule("delivery_limit_requeues", "x-delivery-limit", "delivery-limit", REQUEUE_WHY)
DELIVERY_LIMIT = Rule("default_delivery_limit", None, None, DELIVERY_LIMIT_WHY)


@dataclass(frozen=True)
class Finding:
    """A setting of one object that 4.x changes: the object, where in it (an argument or key), and why."""

    key: Key  # the queue's or policy's model key
    setting: str  # "x-queue-mode", "ha-mode", "durable", or "" for the object as a whole
    value: Any
    why: str
    rule: Rule | None = None  # what the broker does with it, by version (topology/verdicts.py)


def _policy_key_rule(key: str) -> Rule | None:
    for rule in RULES:
        if rule.policy_key == key or (rule.policy_key == "ha-*" and key in MIRRORING_KEYS):
            return rule
    return None


# Policies that reach no queue of a rule's type: "quorum_queues" policies never touch a classic queue.
_REACHES = {"classic": frozenset({"queues", "classic_queues", "all"})}


def policy_findings(policies: tuple[Policy, ...]) -> Iterator[Finding]:
    """Policy and operator policy keys a rule names."""
    for policy in policies:
        for key, value in sorted(policy.definition.items()):
            rule = _policy_key_rule(key)
            if rule is None or not rule.applies(value):
                continue
            if rule.queue_type is None or policy.apply_to in _REACHES[rule.queue_type]:
                yield Finding(policy.key, key, value, rule.why, rule)


def argument_findings(queues: tuple[Queue, ...]) -> Iterator[Finding]:
    """Queue arguments a rule names, and non-durable classic queues."""
    for queue in queues:
        for rule in RULES if queue.arguments else ():
            if rule.queue_type not in (None, queue.type):
                continue
            if rule.argument in queue.arguments and rule.applies(queue.arguments[rule.argument]):
                yield Finding(queue.key, rule.argument, queue.arguments[rule.argument], rule.why, rule)
        if not queue.durable and queue.type == "classic":
            yield Finding(queue.key, "durable", False, TRANSIENT_WHY, TRANSIENT)


_NO_DEFINITION: Mapping[str, Any] = MappingProxyType({})  # what no policy gives: shared, read-only


def policy_definitions(topology: Topology) -> list[Mapping[str, Any]]:
    """Each queue's settings from policies, in topology order: computed once, read by both delivery-limit passes.

    A vhost's policy sets are built once, and a queue in a vhost without policies costs no lookup at all.
    """
    by_vhost = _policies_by_vhost(topology)
    if not by_vhost:
        return [_NO_DEFINITION] * len(topology.queues)
    return [
        effective(queue.type, queue.name, *by_vhost[queue.vhost]).definition
        if queue.vhost in by_vhost
        else _NO_DEFINITION
        for queue in topology.queues
    ]


def _policies_by_vhost(topology: Topology) -> dict[str, tuple[PolicySet, PolicySet]]:
    """Each vhost's (policies, operator policies), built in one pass over the policies, not one pass per vhost."""
    chosen: dict[str, tuple[list[Policy], list[Policy]]] = {}
    for policy in topology.policies:
        own, operator = chosen.setdefault(policy.vhost, ([], []))
        (operator if isinstance(policy, OperatorPolicy) else own).append(policy)
    return {vhost: (PolicySet(own), PolicySet(operator)) for vhost, (own, operator) in chosen.items()}


def _dead_letter_settings(queue: Queue, definition: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(dead-letter exchange, routing key) of a queue, from its arguments or the policies that reach it."""
    exchange = queue.arguments.get("x-dead-letter-exchange", definition.get("dead-letter-exchange"))
    key = queue.arguments.get("x-dead-letter-routing-key", definition.get("dead-letter-routing-key"))
    return (None if exchange is None else str(exchange)), (None if key is None else str(key))


def dead_letter_receivers(topology: Topology, definitions: list[Mapping[str, Any]] | None = None) -> set[Key]:
    """Queues that dead letters reach: bound to an exchange some queue dead-letters to (or named by the default's).

    ``definitions`` are policy_definitions(topology), when the caller has them already.
    """
    receivers: set[Key] = set()
    exchanges: set[tuple[str, str]] = set()  # (vhost, exchange): a binding never leaves its vhost
    if definitions is None:
        definitions = policy_definitions(topology)
    for queue, definition in zip(topology.queues, definitions, strict=True):
        if not queue.arguments and not definition:
            continue  # no dead-lettering: most dead-letter queues and plain queues stop here
        exchange, key = _dead_letter_settings(queue, definition)
        if exchange == "":
            receivers.add((QUEUE.name, queue.vhost, key or queue.name))
        elif exchange is not None:
            exchanges.add((queue.vhost, exchange))
    for vhost, exchange in exchanges:
        for binding in topology.bindings_from(vhost, exchange):
            if binding.destination_type == "queue":
                receivers.add((QUEUE.name, vhost, binding.destination))
    return receivers


def delivery_limit_findings(topology: Topology, exempt: set[Key]) -> Iterator[Finding]:
    """Quorum queues with neither a delivery limit nor dead-lettering: 4.x drops their 21st delivery."""
    definitions = policy_definitions(topology)
    parking = dead_letter_receivers(topology, definitions) | exempt
    quorum_by_vhost: dict[str, list[tuple[Queue, Mapping[str, Any]]]] = {}
    for queue, definition in zip(topology.queues, definitions, strict=True):
        if queue.type == "quorum":
            quorum_by_vhost.setdefault(queue.vhost, []).append((queue, definition))
    for vhost in sorted(quorum_by_vhost):  # by vhost, then in topology order, as the findings always came
        for queue, definition in quorum_by_vhost[vhost]:
            if queue.key in parking:
                continue  # a dead-letter queue is where messages park, not where they are redelivered
            limited = "x-delivery-limit" in queue.arguments or "delivery-limit" in definition
            if not limited and _dead_letter_settings(queue, definition)[0] is None:
                yield Finding(queue.key, "", None, DELIVERY_LIMIT_WHY, DELIVERY_LIMIT)


def celery_consumed(topology: Topology) -> set[Key]:
    """The queues Celery workers (or provisioner's foreign consumers) take tasks from, by the topology's routes."""
    settings = topology.celery
    consumed = {(QUEUE.name, settings.vhost, route.work_queue(settings.default_queue)) for route in topology.tasks}
    return consumed | {(QUEUE.name, settings.vhost, route.queue) for route in topology.tasks}


def requeue_findings(topology: Topology) -> Iterator[Finding]:
    """Quorum queues Celery consumes that rely on a delivery limit: from 4.3 it no longer bounds requeues.

    None where the topology says its workers run provisioner's runtime, which grants one requeue and then
    dead-letters (celery/dead_letters.py), so the broker's count is not what ends a loop.
    """
    consumed = celery_consumed(topology) if topology.tasks and not topology.celery.bounds_requeues else set()
    if not consumed:
        return
    for queue, definition in zip(topology.queues, policy_definitions(topology), strict=True):
        if queue.type != "quorum" or queue.key not in consumed:
            continue
        if "x-delivery-limit" in queue.arguments:
            yield Finding(queue.key, "x-delivery-limit", queue.arguments["x-delivery-limit"], REQUEUE_WHY, REQUEUE)
        elif "delivery-limit" in definition:
            yield Finding(queue.key, "", None, REQUEUE_WHY, REQUEUE)


def findings(topology: Topology, exempt: set[Key] | None = None) -> list[Finding]:
    """Every rule over a topology's queues and policies; ``exempt`` queues skip the delivery-limit rule."""
    return [
        *policy_findings(topology.policies),
        *argument_findings(topology.queues),
        *delivery_limit_findings(topology, exempt or set()),
        *requeue_findings(topology),
    ]


def live_line(finding: Finding) -> str:
    """One line about a live object, for plan: what it uses and why that matters on 4.x."""
    kind, vhost, name = finding.key[0], finding.key[1], finding.key[-1]
    label = kind.replace("_", " ")
    uses = f" uses {finding.setting} {_shown(finding.value)}" if finding.setting not in ("", "durable") else ""
    return f"live {label} {name!r} in vhost {vhost!r}{uses}: {finding.why}"


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
