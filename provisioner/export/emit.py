"""Pure: a topology document (nested dicts in their written order) -> YAML text with comments.

PyYAML cannot write comments, and an export needs them (what could not be
expressed, problems at their object), so the block structure is written here
and only scalars go through PyYAML, which knows how to quote them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from provisioner.errors import one_line
from provisioner.parameters.core import Placeholder

Path = tuple[Any, ...]


class Emitter:
    """Writes one document; remembers the line of every key so problems can be placed at their object."""

    def __init__(self, comments: dict[Path, list[str]] | None = None) -> None:
        self.comments = comments or {}
        self.lines: list[str] = []
        self.key_lines: dict[Path, int] = {}

    def document(self, data: dict[str, Any], header: list[str]) -> str:
        self.lines.extend(f"# {one_line(line)}".rstrip() for line in header)
        self._mapping(data, (), 0)
        return "\n".join(self.lines) + "\n"

    def _comment(self, path: Path, indent: int) -> None:
        for text in self.comments.get(path, ()):
            self.lines.append(f"{' ' * indent}# {one_line(text)}")  # a name in a comment cannot start a line

    def _mapping(self, data: dict[str, Any], path: Path, indent: int, first_prefix: str | None = None) -> None:
        for index, (key, value) in enumerate(data.items()):
            here = (*path, key)
            prefix = first_prefix if first_prefix is not None and index == 0 else " " * indent
            if first_prefix is None or index > 0:
                self._comment(here, indent)
            self.key_lines[here] = len(self.lines) + 1
            head = f"{prefix}{scalar(key)}:"
            self._value(value, here, indent, head)

    def _value(self, value: Any, path: Path, indent: int, head: str) -> None:
        if isinstance(value, dict) and value:
            self.lines.append(head)
            self._mapping(value, path, indent + 2)
        elif isinstance(value, list) and value:
            self.lines.append(head)
            self._sequence(value, path, indent + 2)
        else:
            self.lines.append(f"{head} {self._leaf(value)}")

    def _sequence(self, items: list[Any], path: Path, indent: int) -> None:
        for index, item in enumerate(items):
            here = (*path, index)
            if isinstance(item, dict) and item:
                self._mapping(item, here, indent + 2, first_prefix=f"{' ' * indent}- ")
            elif isinstance(item, list) and item:
                self.lines.append(f"{' ' * indent}-")
                self._sequence(item, here, indent + 2)
            else:
                self.lines.append(f"{' ' * indent}- {self._leaf(item)}")

    @staticmethod
    def _leaf(value: Any) -> str:
        if isinstance(value, dict):
            return "{}"
        if isinstance(value, list):
            return "[]"
        if isinstance(value, Placeholder):
            return scalar(str(value))
        if isinstance(value, str):
            return scalar(value.replace("$", "$$"))  # string values are interpolated on load; $$ is a literal $
        return scalar(value)


def scalar(value: Any) -> str:
    """One scalar as YAML reads it back: plain where that is safe, quoted where it is not.

    A string holding any character that is not printable (a line break of any kind, a
    control or bidi character) is written double-quoted with that character escaped, so
    the exported file shows it and reads it back as it was.
    """
    if isinstance(value, str) and not value.isprintable():
        return _double_quoted(value)
    if value.__class__ is str and _PLAIN_WORD.fullmatch(value) and _resolved_tag(value) == _STR_TAG:
        return value  # what safe_dump writes for such a word, without a dumper per scalar (most of an export's CPU)
    if value.__class__ is bool:
        return "true" if value else "false"  # safe_dump's words for them
    if value.__class__ is int:
        return str(value)  # safe_dump writes an int in decimal, plain
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True)
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    text = text.rstrip("\n")
    if "\n" in text:
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    return text


# A word PyYAML always writes plain when its resolver reads it back as a string: a letter first (no
# indicator), then letters, digits, '_', '.', '-' (no space, ':', '#' or quote the emitter would weigh).
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_STR_TAG = "tag:yaml.org,2002:str"
_resolver = yaml.resolver.Resolver()  # the one safe_dump's SafeDumper resolves with


def _resolved_tag(word: str) -> str:
    """The tag YAML 1.1 gives ``word`` written plain (``yes``, ``null``, ``e5``... are not strings)."""
    tag: str = _resolver.resolve(yaml.ScalarNode, word, (True, False))
    return tag


def _double_quoted(value: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, every other one as an escape."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def emit(
    data: dict[str, Any], header: list[str], comments: dict[Path, list[str]] | None = None
) -> tuple[str, dict[Path, int]]:
    """The YAML text and the line (1-based) of every key."""
    emitter = Emitter(comments)
    text = emitter.document(data, header)
    return text, emitter.key_lines
