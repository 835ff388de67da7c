"""The kind spec, the object and the URI with hidden credentials shared by every parameter kind.

A URI's password lives only in memory: its text is always masked (``***``), so
no plan line, JSON document or error can show it. Two URIs are compared in
full, or masked when the broker answers with the password hidden.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, ...]
MASK = "***"
_CREDENTIALS = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)(?P<password>[^/?#@]*)@")


@dataclass(frozen=True, repr=False)
class Uri:
    """A broker URI that may carry a password; shown and serialised masked, compared in full."""

    text: str = field(compare=True)

    def __repr__(self) -> str:
        return masked(self.text)

    __str__ = __repr__

    def password(self) -> str:
        found = _CREDENTIALS.match(self.text)
        return found.group("password") if found else ""

    def matches(self, live: Uri) -> bool:
        """Equal in full, or equal masked when the broker shows the password hidden."""
        if self.text == live.text:
            return True
        return live.password() in (MASK, "[redacted]") and masked(self.text) == masked(live.text)


class Placeholder(str):
    """A ``${VAR}`` an export writes on purpose (a secret the user sets): never escaped to ``$${VAR}``."""

    __slots__ = ()


def masked(text: str) -> str:
    """The URI with its password, if any, replaced by ***."""
    return _CREDENTIALS.sub(lambda m: m.group("head") + MASK + "@", text)


@dataclass(frozen=True)
class ParameterKind:
    """What one kind is: its file key, where the broker keeps it, how its value looks on either side."""

    kind: str  # as plans name it: operator_policy, federation_upstream, shovel, global_parameter
    file_key: str  # the topology's key: operator_policies, federation_upstreams, shovels, parameters
    from_file: Callable[[Any], Any]  # the file's spec -> the broker's value (canonical)
    from_row: Callable[[dict[str, Any]], Any]  # a row the API lists -> the broker's value (canonical)
    body: Callable[[Parameter], dict[str, Any]]  # the PUT body
    cluster_wide: bool = False
    component: str = ""  # the runtime parameter component the broker files it under (definitions list them)
    uri_fields: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()  # what `rabbitmq-plugins enable` needs
    extension: str = ""  # the management extension that shows the plugin is on (GET /api/extensions)
    tags: tuple[str, ...] = ("administrator",)  # management tags that may write it
    kept: Callable[[str], str] = lambda name: ""  # why a live object is never pruned ("" : it may be)
    describe: Callable[[Any], str] | None = None  # the create line's text of a value (default: its fields)
    check: Callable[[Any], str] = lambda spec: ""  # what the broker would refuse in the file's spec ("": nothing)


@dataclass(frozen=True)
class Parameter:
    """One named object of a parameter kind; ``value`` is the broker's JSON, URIs wrapped in Uri."""

    kind: str
    vhost: str  # "" for cluster-wide kinds
    name: str
    value: Any

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.name)

    def __hash__(self) -> int:
        return hash(self.key)

    def plain(self) -> Any:
        """The value as the broker takes it (URIs in full): only for the request body."""
        return _unwrap(self.value)

    def secrets(self) -> set[str]:
        return {u.password() for u in _uris(self.value) if u.password()}


def wrap_uris(value: Any, fields: tuple[str, ...]) -> Any:
    """``value`` with the URI fields (a string or a list of strings) wrapped in Uri."""
    if not isinstance(value, dict):
        return value
    result = dict(value)
    for name in fields:
        found = result.get(name)
        if isinstance(found, str):
            result[name] = Uri(found)
        elif isinstance(found, list):
            result[name] = tuple(Uri(u) if isinstance(u, str) else u for u in found)
    return result


def _unwrap(value: Any) -> Any:
    if isinstance(value, Uri):
        return value.text
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_unwrap(v) for v in value]
    return value


def _uris(value: Any) -> list[Uri]:
    if isinstance(value, Uri):
        return [value]
    if isinstance(value, dict):
        return [u for v in value.values() for u in _uris(v)]
    if isinstance(value, list | tuple):
        return [u for v in value for u in _uris(v)]
    return []


def same_value(desired: Any, live: Any) -> bool:
    """The broker's value equals the desired one (URIs by Uri.matches, numbers as JSON compares them)."""
    if isinstance(desired, Uri) and isinstance(live, Uri):
        return desired.matches(live)
    if isinstance(desired, dict) and isinstance(live, dict):
        return desired.keys() == live.keys() and all(same_value(desired[k], live[k]) for k in desired)
    if isinstance(desired, list | tuple) and isinstance(live, list | tuple):
        return len(desired) == len(live) and all(same_value(a, b) for a, b in zip(desired, live, strict=True))
    return json.dumps(desired, sort_keys=True, default=str) == json.dumps(live, sort_keys=True, default=str) and (
        type(desired) is bool
    ) == (type(live) is bool)


def dashed(spec: Any) -> Any:
    """The file's top-level snake_case keys as the broker's dashed ones (ack_mode -> ack-mode)."""
    return {str(k).replace("_", "-"): v for k, v in (spec or {}).items()} if isinstance(spec, dict) else spec


def value_text(value: Any) -> str:
    """A value as a plan line shows it: URIs masked, tables as {a: 1}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, Uri):
        return str(value)
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


@dataclass(frozen=True)
class Parameters:
    """The desired objects of every parameter kind.

    A vhost owns a kind when its body names the kind's key (``shovels: {}``
    owns them and wants none); global parameters are managed when
    ``parameters:`` is present and pruned only with ``parameters_exclusive``.
    """

    objects: tuple[Parameter, ...] = ()
    owned: frozenset[tuple[str, str]] = frozenset()  # (vhost, kind); vhost "" for cluster-wide kinds
    exclusive: bool = False

    @property
    def is_empty(self) -> bool:
        return not self.owned

    def owns(self, vhost: str, kind: str) -> bool:
        return (vhost, kind) in self.owned

    def secrets(self) -> set[str]:
        """The passwords inside URIs, for the CLI's last line of defence (redact)."""
        return {secret for parameter in self.objects for secret in parameter.secrets()}
