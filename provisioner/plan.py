"""The plan vocabulary: a closed set of actions, a change is action + before + after + field differences.

diff.py fills a Plan, apply.py executes it, cli/ prints it; the three meet
only here. The order of execution is the registry's (provisioner/kinds).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
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
class Held:
    """What one queue a change touches holds: ready and unacknowledged messages, read when the plan was made.

    Classic queues' counts come from their own totals (live); ``ready`` and
    ``consumers`` of the others from a passive declare, their ``unacked`` as of
    a tick (every holder of a quorum queue is one of its consumers). ``sure`` is False
    when the count is only a lower bound: a stream whose first message arrived
    before its count settled.
    """

    vhost: str
    queue: str
    type: str
    ready: int
    unacked: int
    consumers: int | None  # None: not read (a classic queue only a limit change reaches)
    bytes: int | None = None  # message bytes where the broker keeps statistics (as of their last sample)
    sure: bool = True

    @property
    def messages(self) -> int:
        return self.ready + self.unacked

    def text(self) -> str:
        """``500 messages (400 ready, 100 unacked), 1 consumer`` as plans print it."""
        count = f"{self.messages} messages ({self.ready} ready, {self.unacked} unacked)"
        if not self.sure:
            count = f"at least {self.messages} messages (a stream's count settles late)"
        size = f", {self.bytes} bytes" if self.bytes is not None and self.messages else ""
        consumers = f", {self.consumers} consumers" if self.consumers is not None else ""
        return f"{count}{size}{consumers}"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"messages": self.messages}


@dataclass(frozen=True)
class LimitChange:
    """A setting that can drop or expire a queue's messages, changed by one change of the plan.

    ``key`` is the policy key (``max-length``); ``source`` says who sets the
    value after apply (``argument x-max-length``, ``policy NAME``, ``operator policy NAME``);
    ``by`` is the key of the change that changes it.
    """

    vhost: str
    queue: str
    key: str
    before: Any
    after: Any
    source: str
    by: Key
    overflow: str = "drop-head"  # the queue's overflow mode after apply
    settings: tuple[tuple[str, Any], ...] = ()  # every family's value on the queue after apply

    def to_json(self) -> dict[str, Any]:
        document = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        document["by"] = {"kind": self.by[0], "vhost": self.by[1], "name": self.by[2]}
        document["settings"] = dict(self.settings)
        return document


@dataclass(frozen=True)
class Loss:
    """A limit change that drops or expires messages a queue holds: refused without --force."""

    limit: LimitChange
    held: Held
    what: str  # "drops 490 of them", "expires those older than 1000 ms", ...

    def text(self) -> str:
        limit = self.limit
        return (
            f"queue {limit.queue!r} in {limit.vhost!r} holds {self.held.text()}; {limit.source} sets {limit.key} "
            f"{value_text(limit.before)} -> {value_text(limit.after)}, which {self.what}"
        )

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit.to_json(), "held": self.held.to_json(), "what": self.what, "text": self.text()}


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
    messages: int | None = None  # for queues being replaced or deleted: ready and unacknowledged
    consumers: int | None = None
    unacked: int | None = None  # of ``messages``, how many are delivered and not yet acknowledged
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
            if self.unacked is not None:
                document["unacked"] = self.unacked
        if self.parked is not None:
            document["parked"] = self.parked.to_json()
        return document


@dataclass(frozen=True)
class Unmanaged:
    """An object in a managed vhost that the topology does not describe (deleted only with --prune)."""

    resource: Resource
    note: str = ""
    messages: int | None = None  # ready and unacknowledged
    consumers: int | None = None
    unacked: int | None = None

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
            if self.unacked is not None:
                document["unacked"] = self.unacked
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
    limits: tuple[LimitChange, ...] = ()  # limits.py: settings that can drop or expire messages, changed
    held: tuple[Held, ...] = ()  # what each queue a change touches holds (planning.with_held)
    losses: tuple[Loss, ...] = ()  # limits.losses(): what apply refuses without --force

    def held_by(self, vhost: str, queue: str) -> Held | None:
        """What one queue holds, when a change touches it and the plan was made with counts."""
        return self._held_index.get((vhost, queue))

    @functools.cached_property
    def _held_index(self) -> dict[tuple[str, str], Held]:
        return {(item.vhost, item.queue): item for item in self.held}

    @functools.cached_property
    def losses_by(self) -> dict[LimitChange, Loss]:
        """Each loss by the limit change that causes it."""
        return {loss.limit: loss for loss in self.losses}

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
        } | self._counts_json()

    def _counts_json(self) -> dict[str, Any]:
        """What queues the changes touch hold, and what would be lost: present only when there is any."""
        found: dict[str, tuple[Any, ...]] = {"limits": self.limits, "held": self.held, "losses": self.losses}
        return {key: [item.to_json() for item in items] for key, items in found.items() if items}


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
