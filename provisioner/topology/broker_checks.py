"""What the broker refuses of exchanges, bindings and policies, said by validate at the line that writes it.

Each rule here was tried against RabbitMQ 3.10 and 4.0: what one of them refuses,
validate refuses first, so apply never stops half-way. A policy key only one
version knows (``ha-*`` on 3.x, ``target-group-size`` on 4.x) is accepted: the
version that refuses it says so when applying (readiness.py warns about ``ha-*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from provisioner.errors import Problem
from provisioner.patterns import regex_problem
from provisioner.topology.arguments import BY_POLICY_KEY, MAX_ROUTING_KEY_BYTES, describe, table_value_problem
from provisioner.topology.expand import Origin
from provisioner.topology.model import Key, Topology

X_MATCH = ("all", "any", "all-with-x", "any-with-x")
MIRRORING_KEYS = ("ha-mode", "ha-params", "ha-sync-mode", "ha-sync-batch-size", "ha-promote-on-shutdown")
# Policy keys beside the queue arguments' ones (BY_POLICY_KEY), with the kind of value each takes.
OTHER_POLICY_KEYS: dict[str, str] = {
    "alternate-exchange": "str",
    "initial-cluster-size": "int",
    "federation-upstream": "str",  # the federation plugin's
    "federation-upstream-set": "str",
    "target-group-size": "int",  # 4.x only
    "stream-filter-size-bytes": "int",  # 4.x only
    "consumer-timeout": "int",  # 4.x only
    **dict.fromkeys(MIRRORING_KEYS, "any"),  # 3.x only (readiness.py warns)
    "ha-promote-on-failure": "any",
}


def check_exchange_arguments(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """An alternate exchange is named by a string (the broker refuses any other type)."""
    for exchange in topology.exchanges:
        value = exchange.arguments.get("alternate-exchange")
        if value is not None and not isinstance(value, str) and table_value_problem(value) is None:
            yield origins[exchange.key].problem(
                f"alternate-exchange names an exchange: it must be a string, not {describe(value)}",
                "arguments",
                "alternate-exchange",
            )


def check_bindings(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Routing keys fit AMQP's 255 bytes; a headers binding's x-match is one of the broker's four."""
    for binding in topology.bindings:
        size = len(binding.routing_key.encode("utf-8", "surrogatepass"))
        if size > MAX_ROUTING_KEY_BYTES and not origins[binding.key].generated_by:  # a dead_letter's: said once
            yield origins[binding.key].problem(
                f"routing key is {size} bytes (UTF-8); AMQP carries at most {MAX_ROUTING_KEY_BYTES}", "routing_key"
            )
        match = binding.arguments.get("x-match")
        if match is not None and match not in X_MATCH:
            yield origins[binding.key].problem(
                f"x-match must be one of {' | '.join(X_MATCH)}, not {describe(match)}", "arguments", "x-match"
            )


def check_policy_keys(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """Every key of a policy is one the broker knows, with a value of its kind; the pattern compiles as PCRE."""
    for policy in topology.policies:
        origin = origins[policy.key]
        own = origin.settings_of_queue is not None
        base: tuple[str, ...] = () if own else ("definition",)
        if not own:
            problem = regex_problem(policy.pattern)
            if problem:
                yield origin.problem(f"pattern {problem}", "pattern")
        mirroring = _mirroring_problem(policy.definition)
        if mirroring:
            yield origin.problem(mirroring, *base)
        for name, value in policy.definition.items():
            message = _policy_key_problem(name, value)
            if message:
                sub = (*base, name) if origin.document.has([*origin.path, *base, name]) else ()
                yield origin.problem(message, *sub, at_key=not sub)


MIRRORING_CHOICES = {
    "ha-sync-mode": ("manual", "automatic"),
    "ha-promote-on-shutdown": ("when-synced", "always"),
    "ha-promote-on-failure": ("when-synced", "always"),
}


def _mirroring_problem(definition: dict[str, Any]) -> str | None:
    """Classic mirroring keys as RabbitMQ 3.x checks them together (measured on 3.10.8: each refused with 400)."""
    if not any(key.startswith("ha-") for key in definition):
        return None
    mode, params = definition.get("ha-mode"), definition.get("ha-params")
    if mode is None:
        return "ha-* settings need ha-mode (all, exactly or nodes)" if "ha-params" in definition else None
    if mode == "all" and "ha-params" in definition:
        return "ha-mode all takes no ha-params"
    if mode == "exactly" and (isinstance(params, bool) or not isinstance(params, int) or params < 1):
        return f"ha-mode exactly needs ha-params, a whole number of at least 1, not {describe(params)}"
    if mode == "nodes" and (not isinstance(params, list) or not all(isinstance(n, str) for n in params)):
        return f"ha-mode nodes needs ha-params, a list of node names, not {describe(params)}"
    if mode not in ("all", "exactly", "nodes"):
        return f"ha-mode must be all, exactly or nodes, not {describe(mode)}"
    for key, choices in MIRRORING_CHOICES.items():
        if key in definition and definition[key] not in choices:
            return f"{key} must be {' or '.join(choices)}, not {describe(definition[key])}"
    batch = definition.get("ha-sync-batch-size")
    if "ha-sync-batch-size" in definition and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        return f"ha-sync-batch-size must be a whole number of at least 1, not {describe(batch)}"
    return None


def _policy_key_problem(name: str, value: Any) -> str | None:
    if name in BY_POLICY_KEY or table_value_problem(value) is not None:
        return None  # its value is checked (against the argument table) by checks.check_values
    kind = OTHER_POLICY_KEYS.get(name)
    if kind is None:
        hint = f" (a policy names it {name[2:]!r})" if name.startswith("x-") and name[2:] in BY_POLICY_KEY else ""
        return f"{name!r} is not a policy setting the broker knows{hint}"
    if kind == "str" and not isinstance(value, str):
        return f"{name} must be a string, not {describe(value)}"
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        return f"{name} must be a whole number of at least 0, not {describe(value)}"
    return None


def check_queue_limits(topology: Topology, origins: dict[Key, Origin]) -> Iterator[Problem]:
    """A vhost's max-queues leaves room for the queues the topology declares there and for apply's lock queue."""
    for limit in topology.accounts.limits:
        if limit.name != "max-queues" or limit.value < 0:
            continue
        queues = [queue for queue in topology.queues if queue.vhost == limit.vhost]
        if len(queues) + 1 <= limit.value:  # + 1: apply's lock is a queue of the vhost while it runs
            continue
        origin = origins[queues[0].key]
        where = next(
            (
                path
                for path in (["limits", "max-queues"], ["vhosts", limit.vhost, "limits", "max-queues"])
                if origin.document.has(path)
            ),
            [*origin.path],
        )
        yield origin.document.problem(
            where,
            f"max-queues {limit.value} leaves no room for the {len(queues)} queues the topology declares in vhost "
            f"{limit.vhost!r} (dead-letter and retry queues included) and apply's lock queue: apply would stop "
            f"at the limit; allow at least {len(queues) + 1}",
        )


CHECKS: tuple[Callable[[Topology, dict[Key, Origin]], Iterator[Problem]], ...] = (
    check_exchange_arguments,
    check_bindings,
    check_policy_keys,
    check_queue_limits,
)
