"""Text a topology may hold: no control characters in names and values, UTF-8 only, a bounded depth.

Every name and value of a topology travels into the broker, into plan text that
people trust in CI logs and into a Python module that workers import. A
character that a log or a terminal cannot show honestly (a line break of any
kind, a carriage return, an escape, a bidi override) is refused at its line, in
keys and values alike, after ``${VAR}`` interpolation, so a variable cannot
bring one in either. Two fields are free text: a ``description`` may hold line
breaks and tabs (it is printed escaped), and a ``password`` may hold anything
(it is never printed). Text that is not UTF-8 (bytes of the environment that
Python keeps as lone surrogates) is refused everywhere: the broker stores UTF-8.
The walk is iterative, so no depth of nesting can exhaust Python's stack.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from provisioner.errors import Problem
from provisioner.topology.documents import Document, dotted

MAX_DEPTH = 64  # the schema nests about 8 levels; AMQP tables stop at 20

# C0 and C1 controls and DEL, Unicode's line and paragraph separators, the bidi controls that reorder what
# a terminal shows (Trojan Source), and the invisible format characters (zero-width space, word joiner,
# byte order mark, soft hyphen...) that make two names look the same: nothing a name or a log line can show
# honestly. The zero-width joiner and non-joiner stay only between two non-ASCII characters: emoji and several
# scripts are written with them (refused_character() says which else: every format and private-use character).
_INVISIBLE = "\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
REFUSED = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_INVISIBLE}]")
_FREE_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_INVISIBLE}]")  # line breaks and tabs allowed
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problems(document: Document) -> list[Problem]:
    """Every key and string value that is not UTF-8 or holds a refused character, nesting too deep, and the
    names the management API cannot address."""
    found = [] if _surely_clean(document.data) else list(_walk(document))
    return found + list(_dot_segments(document)) if isinstance(document.data, dict) else found


# Sections whose names the management API carries in a URL path (exchanges and queues go over AMQP).
HTTP_NAMED = {
    "users": "user",
    "permissions": "user",
    "topic_permissions": "user",
    "policies": "policy",
    "operator_policies": "operator policy",
    "federation_upstreams": "federation upstream",
    "shovels": "shovel",
    "parameters": "global parameter",
}
DOT_SEGMENTS = (".", "..")


def _dot_segments(document: Document) -> Iterator[Problem]:
    """A vhost, user, policy or parameter named '.' or '..': HTTP resolves it away (even as %2E), so the management
    API answers for another resource (405, or a page that is not JSON) and apply would stop half-way."""
    data = document.data
    bodies: list[tuple[list[Any], Any]] = [([], data)]
    if data.get("vhost") in DOT_SEGMENTS:
        yield document.problem(["vhost"], _dot_message("vhost", data["vhost"]))
    vhosts = data.get("vhosts")
    if isinstance(vhosts, dict):
        for name, body in vhosts.items():
            if name in DOT_SEGMENTS:
                yield document.problem(["vhosts", name], _dot_message("vhost", name), at_key=True)
            bodies.append((["vhosts", name], body))
    for path, body in bodies:
        for section in HTTP_NAMED if isinstance(body, dict) else ():
            entries = body.get(section)
            for name in entries if isinstance(entries, dict) else ():
                if name in DOT_SEGMENTS:
                    yield document.problem([*path, section, name], _dot_message(HTTP_NAMED[section], name), at_key=True)


def _dot_message(what: str, name: str) -> str:
    return (
        f"{what} name {name!r} cannot be used: the management API resolves it in its URL path (as '.' and '..' "
        "are resolved in any path, even percent-encoded), so the broker cannot be asked about it"
    )


def _surely_clean(data: Any) -> bool:
    """Whether every key and string is printable and nothing nests too deep: the common case, without paths.

    About 60% of the cost of the walk that names paths (a topology of 170,000 queues: about 0.6 s of CPU
    against 1.0 s); only a topology with something to report takes the slow walk.
    """
    stack: list[tuple[Any, int]] = [(data, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(node, dict):  # MarkedDict too (the guarded reader's)
            for key, value in node.items():
                if key.__class__ is str and not key.isprintable():
                    return False
                kind = value.__class__
                if kind is str:
                    if not value.isprintable():
                        return False
                elif kind is not int and isinstance(value, (dict, list)):
                    push((value, depth + 1))
        else:
            for value in node:
                kind = value.__class__
                if kind is str:
                    if not value.isprintable():
                        return False
                elif kind is not int and isinstance(value, (dict, list)):
                    push((value, depth + 1))
    return True


def _walk(document: Document) -> Iterator[Problem]:
    """Every problem with its path: iterative, so no depth exhausts the stack."""
    stack: list[tuple[Any, list[Any]]] = [(document.data, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            deep = document.problem(path, f"values nest more than {MAX_DEPTH} levels deep; a topology needs far fewer")
            yield replace(deep, path=dotted(path[:8]) + "...")
            continue
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            here = [*path, key]
            if isinstance(key, str) and not key.isprintable():
                said = _text_problem(key, "name")
                if said:
                    yield document.problem(here, said, at_key=True)
            if isinstance(value, str):
                if not value.isprintable():
                    label = key if isinstance(key, str) and key.isprintable() else "value"
                    said = _text_problem(value, "password" if key == "password" else _field(key), label)
                    if said:
                        yield document.problem(here, said)
            elif isinstance(value, (dict, list)):
                stack.append((value, here))


def _field(key: Any) -> str:
    """What a string value stands as: free text under ``description``, else a value."""
    return "description" if key == "description" else "value"


_JOINERS = "\u200c\u200d"  # zero-width non-joiner and joiner: meaningful only between two letters of a script


def refused_character(text: str, pattern: re.Pattern[str] = REFUSED) -> str | None:
    """The first character of ``text`` no log can show honestly, or None.

    ``pattern``'s characters; every other format character (Unicode's Cf: tag characters that smuggle ASCII
    unseen, Arabic number signs, musical formatting...), private-use characters and noncharacters; and a
    zero-width joiner or non-joiner anywhere but between two non-ASCII characters (in emoji and the scripts
    written with it), since between ASCII letters it only makes a name look like another (or\u200dders).
    """
    found = pattern.search(text)
    if found is not None:
        return found.group(0)
    if text.isprintable():
        return None
    for index, character in enumerate(text):
        if character.isprintable():
            continue
        if character in _JOINERS:
            before, after = text[index - 1 : index], text[index + 1 : index + 2]
            if _joinable(before) and _joinable(after):
                continue
            return character
        if unicodedata.category(character) in ("Cf", "Co") or _noncharacter(character):
            return character
    return None


def _joinable(character: str) -> bool:
    """A character a joiner may stand beside: one of a script or an emoji (not ASCII, space or format)."""
    return bool(character) and ord(character) > 0x7F and character.isprintable() and not character.isspace()


def _noncharacter(character: str) -> bool:
    code = ord(character)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def _text_problem(text: str, what: str, label: str = "name") -> str | None:
    """Why ``text`` cannot stand as a name, a value, a description or a password; None if it can.

    ``label`` names it in the message: "name" for a key, else the key it stands under (vhost, routing_key).
    """
    if _SURROGATE.search(text):
        return f"{label} is not UTF-8 text (an environment variable or file holds other bytes)"
    if what == "password":
        return None
    found = refused_character(text, _FREE_TEXT if what == "description" else REFUSED)
    if found is None:
        return None
    return (
        f"{label} {_quoted(text)} holds the character {_shown(found)}, which a log cannot show honestly "
        "(line breaks, control, bidi and invisible characters are refused in names and values)"
    )


def _shown(character: str) -> str:
    return f"U+{ord(character):04X}"


def _quoted(text: str) -> str:
    """The text escaped for one line (repr: every unprintable character as an escape), shortened."""
    return repr(text[:60]) + ("..." if len(text) > 60 else "")
