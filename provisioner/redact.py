"""The last line of defence for secrets: every text the CLI prints passes through :func:`redact`.

Messages are written never to hold a password in the first place (they name
host and port only); this catches what slips through anyway, such as a
library's exception text quoting a URL. A credential is masked where a
credential stands, and only there:

- the password of any URL (``scheme://user:password@``), whether or not it is
  known, and a known password in that place in every form it may take there
  (as written, percent-encoded, escaped), even when it holds URL syntax;
- the value of a password field (``"password": ...``, ``'password_hash': ...``,
  ``password=...``), as a user record, a request body or a query string shows it.

Text equal to a password anywhere else is left alone: masking every occurrence
would print ``+ exchange ***`` for an exchange named like the password (an
oracle for the password) and turn "exist" into "e***ist" for the password ``x``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote

from provisioner.errors import one_line

MASK = "***"

_SCHEME = r"\b[A-Za-z][A-Za-z0-9+.-]*://"
_USER = r"[^\s/?#@:'\"]*:"  # the user part of userinfo, up to the colon before the password
# user:password@ in any URL, for passwords nobody told us about.
_URL_CREDENTIALS = re.compile(rf"(?P<head>{_SCHEME}{_USER})[^\s]*@")
# A password field and its value, as a record or a request shows it: "password": "x", 'password_hash': 'x',
# password=x (a query string, a log's key=value). An unquoted "password: x" is left alone: a name may read so.
_FIELD = re.compile(
    r"(?P<head>(?:(?P<q>[\"'])(?:password|password_hash|passwd)(?P=q)\s*:|(?<![\w.-])(?:password|password_hash|passwd)=)\s*)"
    r"(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&)\]}]+)",
    re.IGNORECASE,
)


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
    """A known password as the password of a URL: after ``scheme://user:``, before ``@``."""
    forms = {form for secret in secrets for form in secret_forms(secret)}
    if not forms:
        return None
    # Longest first: a form that contains another is masked whole.
    alternatives = "|".join(re.escape(form) for form in sorted(forms, key=lambda f: (-len(f), f)))
    return re.compile(rf"(?P<head>{_SCHEME}{_USER})(?:{alternatives})@")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with the passwords of URLs and the values of password fields replaced by ***."""
    pattern = _pattern(frozenset(s for s in secrets if s))
    if pattern is not None:
        text = pattern.sub(lambda m: m.group("head") + MASK + "@", text)
    text = _URL_CREDENTIALS.sub(lambda m: m.group("head") + MASK + "@", text)
    return _FIELD.sub(lambda m: m.group("head") + MASK, text)
