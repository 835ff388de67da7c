"""YAML values with a line mark for each: the marking loader, and the collector pause for building many values."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from provisioner.retain import settle


@dataclass(frozen=True)
class Mark:
    """A position in a file, 1-based like an editor shows it."""

    line: int
    column: int


class MarkedDict(dict):  # type: ignore[type-arg]
    """A mapping that remembers where it and each of its keys and values stand."""

    mark: Mark
    key_marks: dict[Any, Mark]
    value_marks: dict[Any, Mark]


class MarkedList(list):  # type: ignore[type-arg]
    """A sequence that remembers where it and each of its items stand."""

    mark: Mark
    item_marks: list[Mark]


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class NonScalarKey(yaml.MarkedYAMLError):
    """Raised for a mapping key that is a list or mapping (JSON and the broker know only strings)."""


# libyaml's parser where PyYAML was built with it (about ten times faster), the pure-Python one otherwise.
try:
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]  # the stubs omit it
except ImportError:  # PyYAML built without libyaml
    _Parser = yaml.SafeLoader  # type: ignore[misc,assignment]


class _MarkingLoader(_Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
    """A safe loader that builds MarkedDict/MarkedList (line marks for every value)."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


def _construct_mapping(loader: _MarkingLoader, node: yaml.MappingNode) -> Any:
    data = MarkedDict()
    data.mark, data.key_marks, data.value_marks = _mark(node), {}, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise NonScalarKey(None, None, "a mapping key must be a plain value", key_node.start_mark)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_marks[key] = _mark(key_node)
        data.value_marks[key] = _mark(value_node)


def _construct_sequence(loader: _MarkingLoader, node: yaml.SequenceNode) -> Any:
    data = MarkedList()
    data.mark, data.item_marks = _mark(node), []
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.item_marks.append(_mark(item))


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)  # type: ignore[type-var]
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)  # type: ignore[type-var]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cycle collector while building many objects that form no cycles.

    Each collection walks everything built so far, so with it on, loading grows
    faster than the file (three times slower at 8,000 queues). In the `provision`
    process what was built is then frozen (retain.settle), so that the
    collections after the pause do not walk it either.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            settle()
            gc.enable()
