"""A broker's refusal in words: no HTML entities, no Erlang terms or character lists, one line.

The management API answers some refusals with HTML-escaped Erlang terms
(``[{&lt;&lt;"bogus-key"&gt;&gt;,1}] are not recognised policy settings``) or
with a JSON rendering of an Erlang term in which strings are lists of character
codes (``["invalid_regexp",[40],[[109,105,...],1]]``); AMQP reply texts end in
terms such as ``{max_value_exceeded,256}``. This turns each into plain words.
"""

from __future__ import annotations

import html
import re
from typing import Any

from provisioner.errors import one_line

_BINARY = re.compile(r'<<"((?:[^"\\]|\\.)*)">>')  # <<"text">>: an Erlang binary
_CHARLIST = re.compile(r"\[(\d{1,7}(?:,\s*\d{1,7})+)\]")  # [109,105,115]: an Erlang string
_TERM = re.compile(r"\{([a-z_]+),\s*([^{}]*)\}")  # {max_value_exceeded,256}: a tagged tuple
_PAIR = re.compile(r"""\{\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'),\s*([^{}]*?)\s*\}""")  # {'key', 1}
_PAIRS = re.compile(r"\[((?:'[^']*'|\"[^\"]*\") \([^()]*\)(?:,\s*(?:'[^']*'|\"[^\"]*\") \([^()]*\))*)\]")
_SPACES = re.compile(r"\s+")
_MARKUP = re.compile(r"<(?:!doctype|html|body|head|title|h1|p|pre|/[a-z0-9]+)\b", re.IGNORECASE)
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^<>]*>")

# Erlang atoms the broker answers with, in words.
ATOMS = {
    "invalid_regexp": "not a valid regular expression",
    "not_base64": "not base64",
    "max_value_exceeded": "above the maximum",
    "unacceptable_type": "of a type the broker does not take",
    "invalid_overflow": "not a valid overflow value",
    "invalid_queue_locator_arg": "not a valid queue locator",
}


def broker_words(reason: Any) -> str:
    """A refusal reason (text, or the JSON of an Erlang term) as one line of plain words."""
    text = _term_words(reason) if isinstance(reason, list) else str(reason)
    if _MARKUP.search(text):  # an HTML page (a proxy's, an error page): its text, not its tags
        text = _TAG.sub(" ", _HIDDEN.sub(" ", text))
    text = html.unescape(text)
    text = _BINARY.sub(lambda m: repr(m.group(1).replace('\\"', '"')), text)
    text = _CHARLIST.sub(lambda m: _charlist(m.group(0), m.group(1)), text)
    text = _PAIR.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = _PAIRS.sub(lambda m: re.sub(r",\s*", ", ", m.group(1)), text)
    text = _TERM.sub(lambda m: f"{ATOMS.get(m.group(1), m.group(1).replace('_', ' '))} ({m.group(2).strip()})", text)
    text = text.replace("Validation failed", "").strip()
    return one_line(_SPACES.sub(" ", text).strip(" :"))


def _charlist(whole: str, codes: str) -> str:
    numbers = [int(code) for code in codes.split(",")]
    if all(32 <= number < 0x110000 and chr(number).isprintable() for number in numbers):
        return repr("".join(chr(number) for number in numbers))
    return whole


def _term_words(term: list[Any]) -> str:
    """``["invalid_regexp", [40], [[109, ...], 1]]`` -> ``not a valid regular expression: '(': 'missing )' at 1``."""
    parts = [_part(item) for item in term]
    if parts and isinstance(term[0], str):
        parts[0] = ATOMS.get(term[0], term[0].replace("_", " "))
    return ": ".join(parts)


def _part(item: Any) -> str:
    if isinstance(item, list) and item and all(isinstance(code, int) for code in item):
        decoded = _charlist(str(item), ",".join(map(str, item)))
        return decoded
    if isinstance(item, list):
        if len(item) == 2 and isinstance(item[1], int):
            return f"{_part(item[0])} at {item[1]}"
        return ", ".join(_part(sub) for sub in item)
    if isinstance(item, str):
        return repr(item) if not re.fullmatch(r"[a-z_]+", item) else item.replace("_", " ")
    return str(item)
