"""The plan vocabulary: a closed set of actions, a change is action + before + after + field differences.

diff.py fills a Plan, apply.py executes it, cli/ prints it; the three meet
only here. The order of execution is the registry's (provisioner/kinds).
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provisioner.topology.model import Key, Resource


class Action(str, enum.Enum):
    CREATE = "create"
    UPDATE = "update"  # changed in place (policies)
    REPLACE = "replace"  # an immutable property changed: delete and declare again
    DELETE = "delete"  # only with --prune


SYMBOLS = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-"}


@dataclass(frozen=True)
class Parked:
    """A migration's temporary queue found on the broker: the queue's messages and bindings wait there."""

    name: str
    bindings: int
    messages: int | None = None  # exact, over AMQP (None when the plan was made without AMQP)
    consumers: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bindings": self.bindings, "messages": self.messages, "consumers": self.consumers}


@dataclass(frozen=True)
class FieldChange:
    """One broker-visible field that differs: what rules read, instead of parsing a reason."""

    field: str  # "type", "durable", or the key in ``within`` ("x-max-length", "max-length")
    before: Any
    after: Any
    forces_replacement: bool = False
    why: str = ""  # why the field forces a replacement ("a queue's type is immutable on the broker")
    within: str = ""  # the table holding the field: "arguments", "definition", or "" for a field of its own

    def text(self, show: Callable[[Any], str] | None = None) -> str:
        """``x-max-length: 1000 -> 5000``, as plans print it."""
        shown = show or value_text
        return f"{self.field}: {shown(self.before)} -> {shown(self.after)}"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Change:
    """One action on one object; ``fields`` say what differs, ``reason`` is the same for people."""

    action: Action
    before: Resource | None
    after: Resource | None
    reason: str = ""
    messages: int | None = None  # for queues being replaced or deleted
    consumers: int | None = None
    parked: Parked | None = None  # a queue replace that finishes an interrupted migration (apply --migrate)
    fields: tuple[FieldChange, ...] = ()  # field-level differences of an update or replace

    @property
    def resource(self) -> Resource:
        resource = self.after if self.after is not None else self.before
        assert resource is not None
        return resource

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def vhost(self) -> str:
        return self.resource.vhost

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def key(self) -> Key:
        return self.resource.key

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "action": self.action.value,
            "kind": self.kind,
            "vhost": self.vhost,
            "name": self.name,
            "reason": self.reason,
            "before": _fields(self.before),
            "after": _fields(self.after),
            "fields": [item.to_json() for item in self.fields],
        }
        if self.messages is not None:
            document["messages"] = self.messages
            document["consumers"] = self.consumers
        if self.parked is not None:
            document["parked"] = self.parked.to_json()
        return document


@dataclass(frozen=True)
class Unmanaged:
    """An object in a managed vhost that the topology does not describe (deleted only with --prune)."""

    resource: Resource
    note: str = ""
    messages: int | None = None
    consumers: int | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "kind": self.resource.kind,
            "vhost": self.resource.vhost,
            "name": self.resource.name,
        }
        if self.note:
            document["note"] = self.note
        if self.messages is not None:
            document["messages"] = self.messages
            document["consumers"] = self.consumers
        return document


@dataclass(frozen=True)
class Hit:
    """What a policy the topology does not describe changes on one managed object."""

    kind: str  # queue | exchange
    name: str
    settings: tuple[tuple[str, Any, Any], ...]  # (key, intended, effective) for every setting it changes
    shadows: str | None = None  # the topology's policy it displaces, if any

    def text(self) -> str:
        changed = ", ".join(f"{key}: {value_text(old)} -> {value_text(new)}" for key, old, new in self.settings)
        shadowed = f"shadows policy {self.shadows}" if self.shadows else ""
        return f"{self.kind} {self.name}: " + "; ".join(part for part in (shadowed, changed) if part)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "settings": {key: {"intended": old, "effective": new} for key, old, new in self.settings},
            "shadows": self.shadows,
        }


@dataclass(frozen=True)
class Drift:
    """A policy or operator policy the topology does not describe that changes how managed objects behave."""

    policy: Resource
    hits: tuple[Hit, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.policy.kind,
            "vhost": self.policy.vhost,
            "name": self.policy.name,
            "hits": [hit.to_json() for hit in self.hits],
        }


@dataclass(frozen=True)
class QueueSettings:
    """The policy settings a managed queue has after apply, and its effective delivery limit."""

    vhost: str
    queue: str
    type: str
    policy: str | None
    operator_policy: str | None
    definition: dict[str, Any]
    delivery_limit: int | None = None  # quorum queues; None: unlimited
    delivery_limit_source: str = ""  # "argument", "policy NAME", "the broker's default on 4.x", ...

    def to_json(self) -> dict[str, Any]:
        document = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.type != "quorum":
            del document["delivery_limit"], document["delivery_limit_source"]
        return document


@dataclass(frozen=True)
class ClusterNote:
    """A queue the cluster holds back (its node is down) or short of members; ``add``: nodes apply adds."""

    vhost: str
    queue: str
    text: str
    add: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"vhost": self.vhost, "queue": self.queue, "text": self.text, "add": list(self.add)}


@dataclass(frozen=True)
class Plan:
    """What apply would do, in the order it would do it, and what it leaves alone.

    ``drift`` is what objects outside the topology (policies, operator policies)
    change on managed objects; ``problems`` are what apply refuses to start with.
    """

    changes: tuple[Change, ...] = ()
    unmanaged: tuple[Unmanaged, ...] = ()
    drift: tuple[Drift, ...] = ()
    problems: tuple[str, ...] = ()
    settings: tuple[QueueSettings, ...] = ()
    cluster: tuple[ClusterNote, ...] = ()  # broker/cluster.py: queues held back by a node, members missing

    @property
    def is_empty(self) -> bool:
        return not self.changes and not any(note.add for note in self.cluster)

    @property
    def in_sync(self) -> bool:
        """No change to make, nothing outside the topology changing managed objects, nothing held back."""
        return not self.changes and not self.drift and not self.cluster

    def summary(self) -> dict[str, int]:
        counts = Counter(change.action for change in self.changes)
        return {action.value: counts.get(action, 0) for action in Action} | {
            "unmanaged": len(self.unmanaged),
            "drift": len(self.drift),
            "problems": len(self.problems),
        }

    def of(self, action: Action, kind: str | None = None) -> tuple[Change, ...]:
        """The changes of one action (and kind), in plan order."""
        return tuple(c for c in self.changes if c.action is action and (kind is None or c.kind == kind))

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": [change.to_json() for change in self.changes],
            "unmanaged": [item.to_json() for item in self.unmanaged],
            "drift": [item.to_json() for item in self.drift],
            "problems": list(self.problems),
            "queues": [item.to_json() for item in self.settings],
            "cluster": [note.to_json() for note in self.cluster],
            "summary": self.summary(),
        }


def _fields(resource: Resource | None) -> dict[str, Any] | None:
    if resource is None:
        return None
    return {f.name: getattr(resource, f.name) for f in dataclasses.fields(resource)}


def value_text(value: Any) -> str:
    """A setting's value as a person reads it: ``(none)``, ``true``, ``""`` for the default exchange."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    return str(value)
