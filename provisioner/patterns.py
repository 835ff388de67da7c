"""Regular expressions as the broker reads them (Erlang's re, which is PCRE), checked with Python's re.

Policy patterns and permission patterns are compiled by the broker, which refuses
one that does not compile. Python's re is close to PCRE but not the same, so a
pattern is refused only for what PCRE refuses too: an unbalanced parenthesis, an
unterminated character class, a quantifier with nothing to repeat (``a**``), a
range out of order (``a{2,1}``, ``[z-a]``), a trailing backslash. Syntax only
PCRE knows (``\\h``, ``\\z``, ``\\Q...\\E``, ``(?|...)``, ``(*UTF8)``, flags in the
middle, lookbehinds of several lengths) is accepted as the broker accepts it.
PCRE's named groups ``(?<name>...)``, ``(?'name'...)`` and Unicode properties
``\\p{L}`` are translated, so those patterns also match here (plan's view of
which policy reaches a queue); the others match nothing here.
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache

_PCRE_NAMED_GROUP = re.compile(r"(?<!\\)\(\?(?:<(?![=!])([A-Za-z_][A-Za-z0-9_]*)>|'([A-Za-z_][A-Za-z0-9_]*)')")
_PCRE_PROPERTY = re.compile(r"(?<!\\)\\[pP](?:\{\^?[A-Za-z_ &=]+\}|[A-Za-z])")
_PCRE_VERBS = re.compile(r"^(?:\(\*[A-Z_0-9=]+\))+")  # (*UTF8), (*CRLF)... at the start
# Python's words for what PCRE refuses too; any other error is syntax Python lacks and PCRE has.
_SURELY_INVALID = (
    "missing ), unterminated subpattern",
    "unbalanced parenthesis",
    "unterminated character set",
    "nothing to repeat",
    "multiple repeat",
    "min repeat greater than max repeat",
    "bad escape (end of pattern)",
    "bad character range",
)


@lru_cache(maxsize=4096)
def regex_problem(pattern: str) -> str | None:
    """Why the broker cannot compile ``pattern`` as a regular expression, in words; None if it can."""
    try:
        _compile(pattern)
    except re.error as error:
        return f"is not a regular expression: {error}" if str(error).startswith(_SURELY_INVALID) else None
    except (RecursionError, OverflowError, MemoryError):
        return "is not a regular expression the broker can compile (too deeply nested or too large)"
    return None


def compiled(pattern: str) -> re.Pattern[str] | None:
    """The pattern as Python matches it (PCRE's named groups and properties translated), or None."""
    try:
        return _compile(pattern)
    except (re.error, RecursionError, OverflowError, MemoryError):
        return None


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    named = _PCRE_NAMED_GROUP.sub(lambda m: f"(?P<{m.group(1) or m.group(2)}>", _PCRE_VERBS.sub("", pattern))
    with warnings.catch_warnings():  # "possible nested set" and the like: never printed by the CLI
        warnings.simplefilter("ignore")
        return re.compile(_PCRE_PROPERTY.sub(".", named))
