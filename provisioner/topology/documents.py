"""Read topology files: YAML with a line mark for every value, duplicate keys refused.

The result keeps plain dict/list/str types, so the JSON Schema validator and
everything after it see ordinary data. A file without anchors is read by
libyaml straight into plain objects (the common case, and the fast one:
yaml_plain.py); the marks are built, by a second parse, only when a problem
needs a line to point at (yaml_marks.py). Anything unusual (anchors, duplicate
or non-string keys, a YAML error) goes the guarded, marked way, which explains
it (yaml_guard.py). ``${VAR}`` interpolation follows in variables.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import Problem
from provisioner.topology.yaml_guard import _Structure
from provisioner.topology.yaml_marks import (
    Mark,
    MarkedDict,
    MarkedList,
    _MarkingLoader,
    collector_paused,
)
from provisioner.topology.yaml_plain import _plain_data

__all__ = [  # the marks and the collector pause live in yaml_marks.py; importers know them from here
    "MAX_FILE_BYTES",
    "Document",
    "Mark",
    "MarkedDict",
    "MarkedList",
    "collector_paused",
    "dotted",
    "read_document",
]

MAX_FILE_BYTES = 5 * 1024 * 1024  # a topology of 10,000 objects is well under 2 MiB

DEFAULT_VHOST = "/"  # a document without ``vhost:`` or ``vhosts:`` is for the default vhost


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
            except RecursionError:  # nested deeper than the marking loader can follow: no marks, lines from 1
                return self.data
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
        if _at_a_tab(text, error):
            message = "a tab character indents this line; YAML indents with spaces only"
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


def _at_a_tab(text: str, error: yaml.MarkedYAMLError) -> bool:
    """Whether the error points at a tab in a line's indentation (YAML's words: "cannot start any token")."""
    mark = error.problem_mark
    if mark is None or "cannot start any token" not in (error.problem or ""):
        return False
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines):
        return False
    return "\t" in lines[mark.line][: mark.column + 1] and not lines[mark.line][: mark.column].strip(" \t")


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


def vhost_bodies(document: Document) -> Iterator[tuple[str, dict[str, Any], tuple[Any, ...]]]:
    """(vhost, body, path of body) for the single-vhost and the ``vhosts:`` forms."""
    data = document.data
    if "vhosts" in data:
        for name, body in data["vhosts"].items():
            yield name, body or {}, ("vhosts", name)
    else:
        yield data.get("vhost", DEFAULT_VHOST), data, ()
