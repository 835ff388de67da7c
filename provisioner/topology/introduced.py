"""Settings a topology may hold that an older RabbitMQ does not know yet, and refuses.

validate cannot know the broker's version; plan does, and turns each of these into a
problem before anything is written, rather than an apply that fails half-way. The
table was measured by declaring each setting on RabbitMQ 3.10.8, 4.0.5 and 4.3.6
(tests/test_introduced.py repeats that on every leg); ``since`` is the first release
whose notes name the setting, never later than the first version seen to take it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.topology.model import Key, Topology

Version = tuple[int, int]
TYPED_APPLY_TO = ("classic_queues", "quorum_queues", "streams")


@dataclass(frozen=True)
class Introduced:
    """``setting`` written in ``place`` is refused by a RabbitMQ older than ``since``."""

    since: Version
    place: str  # "argument" (of a queue), "policy" or "operator policy"
    setting: str  # the x-argument, the definition key, or "apply-to VALUE"
    queue_type: str = ""  # an argument: the queue type that lacks it on older brokers ("" for all)


INTRODUCED: tuple[Introduced, ...] = (
    Introduced((4, 0), "argument", "x-queue-leader-locator", "classic"),
    *(Introduced((3, 12), "operator policy", f"apply-to {value}") for value in TYPED_APPLY_TO),
    *(
        Introduced((3, 12), "operator policy", key)
        for key in ("overflow", "queue-version", "target-group-size", "queue-master-locator")
    ),
    # Policy keys 3.10.8 refuses ("are not recognised policy settings") and 4.0.5 takes.
    Introduced((3, 12), "policy", "consumer-timeout"),
    Introduced((3, 12), "policy", "target-group-size"),
    Introduced((3, 13), "policy", "stream-filter-size-bytes"),
)


@dataclass(frozen=True)
class TooNew:
    """One object's setting that the broker's version does not know."""

    key: Key
    what: str  # "x-queue-leader-locator on a classic queue", "apply-to quorum_queues"
    since: Version


def too_new(topology: Topology, version: Version) -> Iterator[TooNew]:
    """Each setting of the topology that RabbitMQ ``version`` refuses because it came later."""
    late = [entry for entry in INTRODUCED if version < entry.since]
    if not late:
        return
    for queue in topology.queues:
        for entry in late:
            if entry.place == "argument" and entry.setting in queue.arguments and entry.queue_type in ("", queue.type):
                where = f" on a {entry.queue_type} queue" if entry.queue_type else ""
                yield TooNew(queue.key, f"{entry.setting}{where}", entry.since)
    for policy in topology.policies:
        for entry in late:
            if entry.place == "policy" and entry.setting in policy.definition:
                yield TooNew(policy.key, entry.setting, entry.since)
    for parameter in topology.accounts.parameters.objects:
        if parameter.kind != OPERATOR_POLICY.name or not isinstance(parameter.value, dict):
            continue
        value = parameter.value
        written = {*(value.get("definition") or {}), f"apply-to {value.get('apply-to', 'all')}"}
        for entry in late:
            if entry.place == "operator policy" and entry.setting in written:
                yield TooNew(parameter.key, entry.setting, entry.since)
