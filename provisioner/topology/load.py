"""Read topology files: YAML with a line mark for every value, duplicate keys refused,
``${VAR}`` / ``${VAR:-default}`` interpolated from the environment.

The result keeps plain dict/list/str types, so the JSON Schema validator and
everything after it see ordinary data. A file without anchors is read by
libyaml straight into plain objects (the common case, and the fast one); the
marks are built, by a second parse, only when a problem needs a line to point
at. Anything unusual (anchors, duplicate or non-string keys, a YAML error) goes
the guarded, marked way, which explains it.
"""

from __future__ import annotations

import gc
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import Problem

MAX_FILE_BYTES = 5 * 1024 * 1024  # a topology of 10,000 objects is well under 2 MiB


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


@dataclass(frozen=True)
class Document:
    """One loaded file: its data and where each part of it stands."""

    file: str
    data: Any
    text: str = field(default="", repr=False, compare=False)  # parsed again for marks when a problem needs one

    @cached_property
    def marked(self) -> Any:
        """The file's values with their marks (MarkedDict/MarkedList): parsed on first use."""
        if isinstance(self.data, (MarkedDict, MarkedList)) or not self.text:
            return self.data
        with collector_paused():
            loader = _MarkingLoader(self.text)
            try:
                return loader.get_single_data()
            finally:
                loader.dispose()

    def locate(self, path: Iterable[Any]) -> Mark:
        """The mark of the value at ``path`` (keys and indexes), or of its nearest parent."""
        marked = self.marked
        node, mark = marked, getattr(marked, "mark", Mark(1, 1))
        for step in path:
            if isinstance(node, MarkedDict) and step in node:
                mark, node = node.value_marks[step], node[step]
            elif isinstance(node, MarkedList) and isinstance(step, int) and 0 <= step < len(node):
                mark, node = node.item_marks[step], node[step]
            else:
                break
        return mark

    def has(self, path: Iterable[Any]) -> bool:
        """Whether the document itself writes a value at ``path``."""
        node = self.data
        for step in path:
            if isinstance(node, dict) and step in node:
                node = node[step]
            elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
                node = node[step]
            else:
                return False
        return True

    def locate_key(self, path: Iterable[Any]) -> Mark:
        """The mark of the key that ends ``path`` (for "defined twice" style errors)."""
        steps = list(path)
        parent = self.marked
        for step in steps[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                return self.locate(steps)
        if steps and isinstance(parent, MarkedDict) and steps[-1] in parent.key_marks:
            return parent.key_marks[steps[-1]]
        return self.locate(steps)

    def problem(self, path: Iterable[Any], message: str, *, at_key: bool = False) -> Problem:
        """A Problem at ``path`` in this document."""
        steps = list(path)
        mark = self.locate_key(steps) if at_key else self.locate(steps)
        return Problem(self.file, mark.line, mark.column, message, dotted(steps))


def dotted(path: Iterable[Any]) -> str:
    """``exchanges.example.type`` / ``queues.q.bindings[0].exchange``."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def read_document(file: str | Path) -> Document:
    """Read and parse one file; raise a Problem-carrying error for anything unreadable."""
    from provisioner.errors import TopologyInvalid

    name = str(file)

    def fail(message: str, line: int = 1, column: int = 1) -> TopologyInvalid:
        return TopologyInvalid([Problem(name, line, column, message)])

    raw = _read_bounded(name, fail)
    if b"\x00" in raw:
        raise fail("not a text file (it contains NUL bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise fail(f"not UTF-8 text (byte {error.start})") from error
    if not text.strip():
        raise fail("empty file; a topology needs at least 'version: 1'")
    plain = _plain_data(text)
    if plain is not None:
        return Document(name, plain, text)
    try:
        with collector_paused():
            loader = _MarkingLoader(text)
            try:
                node = loader.get_single_node()
                found = _Structure(loader).problems(node)
                data = None if node is None or found else loader.construct_document(node)
            finally:
                loader.dispose()
    except yaml.composer.ComposerError as error:
        if "single document" in f"{error.context} {error.problem}":
            raise fail("several YAML documents in one file; put one topology per file") from error
        raise fail(f"YAML: {error.problem or error.context}", *_line_column(error)) from error
    except yaml.reader.ReaderError as error:
        raise fail(f"YAML: {_reader_problem(error)}", *_position(text, error.position)) from error
    except yaml.MarkedYAMLError as error:
        message = error.problem or error.context or "invalid YAML"
        raise fail(f"YAML: {message}", *_line_column(error)) from error
    except yaml.YAMLError as error:
        raise fail(f"YAML: {error}") from error
    except RecursionError:
        raise fail("YAML nests too deeply") from None  # the cause is only a very deep stack
    if found:
        raise TopologyInvalid(
            [Problem(name, mark.line, mark.column, message, dotted(path)) for path, mark, message in found]
        )
    if data is None:
        raise fail("empty document; a topology needs at least 'version: 1'")
    return Document(name, data)


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


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cycle collector while building many objects that form no cycles.

    Each collection walks everything built so far, so with it on, loading grows
    faster than the file (three times slower at 8,000 queues).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_bounded(name: str, fail: Any) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes of the file, whatever it is (a pipe, /dev/zero) and whatever stat says."""
    limit_text = f"a topology file may be at most {MAX_FILE_BYTES // (1024 * 1024)} MiB"
    try:
        # O_NONBLOCK: opening a named pipe without a writer returns at once (then reads as empty).
        descriptor = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as error:
        raise fail("no such file") from error
    except OSError as error:
        raise fail(f"cannot read: {error.strerror or error}") from error
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise fail("is a directory; name the topology files in it (for example dir/*.yaml)")
        if os.isatty(descriptor):
            raise fail("is a terminal; name a topology file")
        if stat.S_ISREG(status.st_mode) and status.st_size > MAX_FILE_BYTES:
            raise fail(f"file is {status.st_size // (1024 * 1024)} MiB; {limit_text}")
        os.set_blocking(descriptor, True)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(descriptor, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise fail(f"cannot read: {error.strerror or error}") from error
    finally:
        os.close(descriptor)
    if size > MAX_FILE_BYTES:
        raise fail(f"more than {MAX_FILE_BYTES // (1024 * 1024)} MiB; {limit_text}")
    return b"".join(chunks)


def _line_column(error: yaml.MarkedYAMLError) -> tuple[int, int]:
    mark = error.problem_mark or error.context_mark
    return (mark.line + 1, mark.column + 1) if mark else (1, 1)


def _position(text: str, position: int) -> tuple[int, int]:
    """Line and column of a character offset (clamped: libyaml may count bytes)."""
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _reader_problem(error: yaml.reader.ReaderError) -> str:
    if isinstance(error.character, int):
        return f"character {chr(error.character)!r} is not allowed ({error.reason})"
    return f"{error.reason}"


ALIAS_BUDGET = 100_000  # values that aliases may add beyond those written out
_CAP = 10**12  # sizes stop growing here, so an alias bomb never makes huge integers

_KEY_TYPES = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:binary": "binary data",
}
_STRING_KEY_TAGS = frozenset({"tag:yaml.org,2002:str", "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})


class _Structure:
    """One pass over the node graph, each node once however many aliases point at it.

    Finds duplicate keys (PyYAML would silently keep the last), keys YAML reads as
    something other than a string (``yes``, ``~``, ``007``), aliases that refer to
    themselves, and alias expansions beyond ALIAS_BUDGET (the "billion laughs").
    """

    def __init__(self, loader: _MarkingLoader) -> None:
        self.loader = loader
        self.sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
        self.found: list[tuple[list[Any], Mark, str]] = []

    def problems(self, root: yaml.Node | None) -> list[tuple[list[Any], Mark, str]]:
        if root is None:
            return []
        total = self.size(root, [])
        if not self.found and total - len(self.sizes) > ALIAS_BUDGET:
            self.found.append(
                (
                    [],
                    _mark(root),
                    f"YAML aliases expand this file by more than {ALIAS_BUDGET:,} values "
                    "(an alias bomb?); write the values out",
                )
            )
        return self.found

    def size(self, node: yaml.Node, path: list[Any]) -> int:
        known = self.sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise yaml.MarkedYAMLError(None, None, "an alias refers to itself", node.start_mark)
            return known
        self.sizes[id(node)] = -1  # in progress: meeting it again is a cycle
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += self.mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                total += self.size(item, [*path, index])
        total = min(total, _CAP)
        self.sizes[id(node)] = total
        return total

    def mapping(self, node: yaml.MappingNode, path: list[Any]) -> int:
        total = 0
        first: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key_node.tag not in _STRING_KEY_TAGS:
                self.found.append(([*path, key], _mark(key_node), self.key_problem(key_node)))
            elif key is not None and key in first:
                message = f"duplicate key {key!r} (first at line {first[key].line})"
                self.found.append(([*path, key], _mark(key_node), message))
            elif key is not None:
                first[key] = _mark(key_node)
            total += self.size(key_node, path) + self.size(value_node, [*path, key])
        return total

    def key_problem(self, key_node: yaml.ScalarNode) -> str:
        what = _KEY_TYPES.get(key_node.tag, "not a string")
        try:
            value = self.loader.construct_object(key_node)
        except (yaml.YAMLError, ValueError, OverflowError):
            value = None
        shown = json.dumps(value, default=str).strip('"')  # true, false, null, 7, 2024-01-01
        detail = "" if value is None else f" ({shown})"
        return f"key {key_node.value!r} is read as {what}{detail}; quote it"


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$\$")


def interpolate(
    document: Document,
    environ: Mapping[str, str] | None = None,
    wants_text: Callable[[list[Any]], bool] | None = None,
) -> list[Problem]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string value, in place.

    ``$$`` stands for a literal ``$``. A variable that is unset and has no
    default is a problem at the line that uses it. Keys are not interpolated:
    names of objects stay greppable. A value that is only ``${VAR}`` takes the
    YAML type of what it expands to, unless ``wants_text(path)`` says the place
    takes only strings (``vhost: ${VH}`` with VH=007 stays "007").
    """
    env = os.environ if environ is None else environ
    problems: list[Problem] = []

    def substitute(text: str, path: list[Any]) -> str:
        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value is None or (value == "" and ":-" in match.group(0)):
                if default is None:
                    problems.append(document.problem(path, f"environment variable {name} is not set"))
                    return match.group(0)
                return default
            return value

        return _VARIABLE.sub(one, text)

    def walk(node: Any, path: list[Any]) -> None:
        items: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            return
        for key, value in items:
            if isinstance(value, str) and "$" in value:
                result = substitute(value, [*path, key])
                whole = _VARIABLE.fullmatch(value.strip()) is not None and value.strip() != "$$"
                keep = not whole or (wants_text is not None and wants_text([*path, key]))
                node[key] = result if keep else _typed(result)
            else:
                walk(value, [*path, key])

    walk(document.data, [])
    return problems


_TYPED_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"})


def _typed(text: str) -> Any:
    """The YAML type of an expanded value (``5000`` is an int, ``no`` a boolean); anything else stays text."""
    node = yaml.ScalarNode(yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False)), text)
    if node.tag not in _TYPED_TAGS:
        return text
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except (yaml.YAMLError, ValueError):
        return text
