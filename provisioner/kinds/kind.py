"""What a kind is (see the registry, provisioner/kinds/__init__.py, for what a new kind provides)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provisioner.plan import Action, FieldChange, value_text

DELETIONS_AFTER = 1_000  # above every creation rank: all deletions run after all creations
EVERY_TABLE_KEY = "*"  # in ``immutable``: any difference in the table forces a replace too


@dataclass(frozen=True)
class Kind:
    """What the pipeline needs to know of one kind of broker object."""

    name: str
    creation: int
    deletion: int
    actions: tuple[Action, ...]  # what the executor does to it; each has a handler in provisioner/handlers/
    compared: tuple[str, ...] = ()
    table: str = ""
    immutable: tuple[str, ...] = ()
    why: str = ""
    describe: Callable[[Any], str] = field(default=lambda resource: "")
    show: Callable[[Any], str] = value_text
    definitions: str = ""
    read: Callable[[str, dict[str, Any]], Any] | None = None
    write_tags: tuple[str, ...] = ()  # management user tags that may write it, when its writes need one

    def phases(self) -> list[tuple[int, Action]]:
        """(rank, action) of every action it supports: deletions rank after every creation."""
        return [
            (DELETIONS_AFTER + self.deletion if action is Action.DELETE else self.creation, action)
            for action in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)
            if action in self.actions
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
