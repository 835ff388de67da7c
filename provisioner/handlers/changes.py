"""The objects a phase's changes declare or delete, as their model class."""

from __future__ import annotations

from typing import Any, TypeVar

from provisioner.plan import Change

T = TypeVar("T")


def afters(changes: tuple[Change, ...], model: type[T]) -> list[T]:
    """The objects the changes declare, as their model class."""
    return [_as(change.after, model) for change in changes]


def befores(changes: tuple[Change, ...], model: type[T]) -> list[T]:
    """The objects the changes delete, as their model class."""
    return [_as(change.before, model) for change in changes]


def _as(resource: Any, model: type[T]) -> T:
    assert isinstance(resource, model), resource
    return resource
