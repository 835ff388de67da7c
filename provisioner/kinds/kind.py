"""What a kind is (see the registry, provisioner/kinds/__init__.py, for what a new kind provides)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from provisioner.plan import Action, Change, FieldChange, value_text

if TYPE_CHECKING:
    from provisioner.apply import Executor

Handler = Callable[["Executor", tuple[Change, ...]], None]
T = TypeVar("T")
DELETIONS_AFTER = 1_000  # above every creation rank: all deletions run after all creations
EVERY_TABLE_KEY = "*"  # in ``immutable``: any difference in the table forces a replace too


@dataclass(frozen=True)
class Kind:
    """What the pipeline needs to know of one kind of broker object."""

    name: str
    creation: int
    deletion: int
    handlers: Mapping[Action, Handler]
    compared: tuple[str, ...] = ()
    table: str = ""
    immutable: tuple[str, ...] = ()
    why: str = ""
    describe: Callable[[Any], str] = field(default=lambda resource: "")
    show: Callable[[Any], str] = value_text
    definitions: str = ""
    read: Callable[[str, dict[str, Any]], Any] | None = None
    # A kind added after the core ones (vhost, exchange, queue, binding, policy, accounts), whose
    # objects live in Topology.others: the key of a vhost's body in the topology file that holds
    # ``{name: spec}``, the JSON Schema of one spec, how a spec becomes the model, and which items
    # of its ``definitions`` list are its own (parameters of every component share one list).
    section: str = ""
    schema: dict[str, Any] | None = None
    expand: Callable[[str, str, Any], Any] | None = None
    accepts: Callable[[dict[str, Any]], bool] = field(default=lambda item: True)
    write_tags: tuple[str, ...] = ()  # management user tags that may write it, when its writes need one

    def phases(self) -> list[tuple[int, Action]]:
        """(rank, action) of every action it supports: deletions rank after every creation."""
        return [
            (DELETIONS_AFTER + self.deletion if action is Action.DELETE else self.creation, action)
            for action in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)
            if action in self.handlers
        ]

    def from_definitions(self, vhost: str, item: dict[str, Any]) -> Any:
        """One item of the definitions document as the model (only kinds read from that document)."""
        assert self.read is not None, f"{self.name} is not read from definitions"
        return self.read(vhost, item)

    def forces_replacement(self, name: str, within: str) -> bool:
        return (name in self.immutable and not within) or (bool(within) and EVERY_TABLE_KEY in self.immutable)

    def field_changes(self, before: Any, after: Any) -> tuple[FieldChange, ...]:
        """Every compared field and table key that differs, in plan order."""
        found = [self._change(name, getattr(before, name), getattr(after, name), "") for name in self.compared]
        if self.table:
            old: dict[str, Any] = getattr(before, self.table)
            new: dict[str, Any] = getattr(after, self.table)
            keys = sorted(old.keys() | new.keys())
            found += [self._change(key, old.get(key), new.get(key), self.table) for key in keys]
        return tuple(change for change in found if change.before != change.after)

    def _change(self, name: str, before: Any, after: Any, within: str) -> FieldChange:
        forced = self.forces_replacement(name, within)
        return FieldChange(name, before, after, forced, self.why if forced else "", within)

    def reason(self, changes: tuple[FieldChange, ...]) -> str:
        """The fields' differences as one line for people: ``x-max-length: 1000 -> 5000; ...``."""
        return "; ".join(change.text(self.show) for change in changes)


def afters(changes: tuple[Change, ...], model: type[T]) -> list[T]:
    """The objects the changes declare, as their model class."""
    return [_as(change.after, model) for change in changes]


def befores(changes: tuple[Change, ...], model: type[T]) -> list[T]:
    """The objects the changes delete, as their model class."""
    return [_as(change.before, model) for change in changes]


def _as(resource: Any, model: type[T]) -> T:
    assert isinstance(resource, model), resource
    return resource
