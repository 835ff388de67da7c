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


def _plain(loader: _PlainLoader, event: Any) -> Any:  # a yaml.Event; the stubs type its fields poorly
    """The value that starts with ``event``, as plain objects; _Unusual for what needs the guarded loader."""
    kind = type(event)
    if getattr(event, "tag", None) is not None or getattr(event, "anchor", None) is not None:
        raise _Unusual
    if kind is yaml.ScalarEvent:
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR:
            return event.value
        return loader.construct_object(yaml.ScalarNode(tag, event.value, style=event.style))
    if kind is yaml.SequenceStartEvent:
        items = []
        while type(item := loader.get_event()) is not yaml.SequenceEndEvent:
            items.append(_plain(loader, item))
        return items
    if kind is yaml.MappingStartEvent:
        return _plain_mapping(loader)
    raise _Unusual  # an alias


def _plain_mapping(loader: _PlainLoader) -> dict[str, Any]:
    """A mapping's keys and values, up to its end event; _Unusual for a key the guarded loader must judge."""
    data: dict[str, Any] = {}
    while type(key := loader.get_event()) is not yaml.MappingEndEvent:
        if type(key) is not yaml.ScalarEvent or key.tag is not None or key.anchor is not None:
            raise _Unusual  # a list or mapping as a key, a tagged key
        if loader.resolve(yaml.ScalarNode, key.value, key.implicit) != _STR or key.value in data:
            raise _Unusual  # a key YAML reads as a boolean, number or null; a duplicate key
        data[key.value] = _plain(loader, loader.get_event())
    return data
