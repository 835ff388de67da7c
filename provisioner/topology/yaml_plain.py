"""The fast reader: a file with nothing unusual in it, from libyaml's events straight into plain objects."""

from __future__ import annotations

from typing import Any

import yaml

from provisioner.topology.yaml_marks import _Parser, collector_paused


class _Unusual(Exception):
    """The file needs the guarded, marked loader (to be refused with a reason, or for its anchors)."""


class _PlainLoader(_Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
    """libyaml's parser with the safe constructor, for scalars other than strings."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


_STR = "tag:yaml.org,2002:str"


def _plain_data(text: str) -> Any:
    """The file as plain objects when nothing in it needs the guarded loader; None otherwise.

    No ``&`` means no anchor, so no alias (an alias bomb or a self-reference);
    every key must be a string written once; no explicit tags. Built straight
    from the parser's events: no node tree (three times the file's data) is ever
    held. Whatever else goes wrong is left to the guarded loader to explain.
    """
    if "&" in text:
        return None
    with collector_paused():
        loader = _PlainLoader(text)
        try:
            events = loader.get_event
            if type(events()) is not yaml.StreamStartEvent or type(events()) is not yaml.DocumentStartEvent:
                raise _Unusual  # an empty stream: the guarded loader says so
            data = _plain(loader, events())
            if type(events()) is not yaml.DocumentEndEvent or type(events()) is not yaml.StreamEndEvent:
                raise _Unusual  # several documents
            return data
        except (yaml.YAMLError, _Unusual, RecursionError, ValueError, OverflowError):
            return None
        finally:
            loader.dispose()


# A plain scalar can be other than a string only if its first character starts one of YAML's implicit
# types (None: a resolver for any first character, which no YAML 1.1 type has; then every scalar is asked).
_TYPED_FIRST = frozenset(_PlainLoader.yaml_implicit_resolvers)
_ASK_ALWAYS = None in _TYPED_FIRST


def _tag(loader: _PlainLoader, value: str, implicit: tuple[bool, bool], seen: dict[str, str]) -> str:
    """The scalar's tag, as the resolver gives it: quoted scalars and most words are strings without asking."""
    if not implicit[0] or (value and value[0] not in _TYPED_FIRST and not _ASK_ALWAYS):
        return _STR
    tag = seen.get(value)
    if tag is None:
        tag = seen[value] = loader.resolve(yaml.ScalarNode, value, implicit)
    return tag


def _plain(loader: _PlainLoader, event: Any, seen: dict[str, str] | None = None) -> Any:  # a yaml.Event
    """The value that starts with ``event``, as plain objects; _Unusual for what needs the guarded loader."""
    seen = {} if seen is None else seen
    kind = type(event)
    if kind is yaml.ScalarEvent:
        if event.tag is not None or event.anchor is not None:
            raise _Unusual
        tag = _tag(loader, event.value, event.implicit, seen)
        if tag == _STR:
            return event.value
        return loader.construct_object(yaml.ScalarNode(tag, event.value, style=event.style))
    if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
        if event.tag is not None or event.anchor is not None:
            raise _Unusual
        if kind is yaml.MappingStartEvent:
            return _plain_mapping(loader, seen)
        items = []
        while type(item := loader.get_event()) is not yaml.SequenceEndEvent:
            items.append(_plain(loader, item, seen))
        return items
    raise _Unusual  # an alias


def _plain_mapping(loader: _PlainLoader, seen: dict[str, str]) -> dict[str, Any]:
    """A mapping's keys and values, up to its end event; _Unusual for a key the guarded loader must judge."""
    data: dict[str, Any] = {}
    get_event = loader.get_event
    while type(key := get_event()) is not yaml.MappingEndEvent:
        if type(key) is not yaml.ScalarEvent or key.tag is not None or key.anchor is not None:
            raise _Unusual  # a list or mapping as a key, a tagged key
        name = key.value
        if _tag(loader, name, key.implicit, seen) != _STR or name in data:
            raise _Unusual  # a key YAML reads as a boolean, number or null; a duplicate key
        data[name] = _plain(loader, get_event(), seen)
    return data
