"""The last line of defence for secrets: every text the CLI prints passes through :func:`redact`.

Messages are written never to hold a password in the first place (they name
host and port only); this catches what slips through anyway, such as a
library's exception text quoting a URL. A secret is masked in every form a
message could carry it: as written in the URL, percent-decoded, percent-encoded
(upper or lower case escapes, ``+`` for spaces), escaped as JSON or as a Python
string literal, and with control characters escaped as :func:`one_line` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote

from provisioner.errors import one_line

MASK = "***"

# user:password@ in any URL, for passwords nobody told us about.
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)[^\s]*@")


def _encodings(text: str) -> set[str]:
    """``text`` and the forms URL-encoding and string escaping turn it into."""
    forms = {text, quote(text, safe=""), quote(text), quote_plus(text), one_line(text)}
    forms |= {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in list(forms)}
    return forms


@lru_cache(maxsize=64)
def secret_forms(secret: str) -> frozenset[str]:
    """Every form of ``secret`` a message could hold: raw, percent-decoded, encoded, escaped."""
    forms: set[str] = set()
    for base in {secret, unquote(secret)}:
        forms |= _encodings(base)
    return frozenset(form for form in forms if form)


@lru_cache(maxsize=16)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets for form in secret_forms(secret)}
    if not forms:
        return None
    # Longest first: a form that contains another is masked whole.
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=lambda f: (-len(f), f))))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret, and any URL's password, replaced by ***."""
    pattern = _pattern(frozenset(s for s in secrets if s))
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _URL_CREDENTIALS.sub(lambda m: m.group("head") + MASK + "@", text)
