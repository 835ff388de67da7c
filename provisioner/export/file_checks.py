"""Pure: the first object of a definitions file RabbitMQ's import refuses or the export cannot read, in one line."""

from __future__ import annotations

from typing import Any

SINGULAR = {"exchanges": "exchange", "queues": "queue", "bindings": "binding", "policies": "policy"}
SINGULAR |= {"vhosts": "vhost", "parameters": "parameter", "users": "user", "permissions": "permission"}
SINGULAR |= {"topic_permissions": "topic permission"}
Wanted = type | tuple[type, ...]
REQUIRED: dict[str, dict[str, Wanted]] = {  # field -> the type the import needs
    "exchanges": {"name": str, "type": str, "durable": bool},  # RabbitMQ 3.10 refuses either without durable
    "queues": {"name": str, "durable": bool, "auto_delete": bool},
    "bindings": {"source": str, "destination": str, "destination_type": str},
    "policies": {"name": str, "pattern": str, "definition": dict},
    "vhosts": {"name": str},
    "parameters": {"component": str, "name": str},
    "users": {"name": str},
    "permissions": {"user": str, "vhost": str},
    "topic_permissions": {"user": str, "vhost": str, "exchange": str},
}
# field -> the type it must have when present (arguments may also be [], which RabbitMQ reads as {})
OPTIONAL: dict[str, dict[str, Wanted]] = {
    "exchanges": {"vhost": str, "auto_delete": bool, "internal": bool, "arguments": dict},
    "queues": {"vhost": str, "arguments": dict},
    "bindings": {"vhost": str, "routing_key": str, "arguments": dict},
    "policies": {"vhost": str, "priority": int, "apply-to": str},
    "vhosts": {"metadata": dict},
    "parameters": {"vhost": str},
    "users": {"tags": (str, list)},
    "permissions": {"configure": str, "write": str, "read": str},
    "topic_permissions": {"write": str, "read": str},
}

NAMING = ("name", "source", "destination", "pattern", "component", "vhost")  # what names an object in a message
TYPE_NAMES = {str: "a string", dict: "an object", bool: "true or false", int: "an integer", list: "a list"}


def malformed(data: dict[str, Any]) -> str:
    """The first object with a missing or mistyped field, named (\"\" when every one is well formed)."""
    for kind, fields in REQUIRED.items():
        items = data.get(kind, [])
        if not isinstance(items, list):
            return f"{kind} is not a list"
        for index, item in enumerate(items):
            found = _object_problem(kind, index, item, fields)
            if found:
                return found
    for index, item in enumerate(data.get("bindings", [])):
        if item["destination_type"] not in ("queue", "exchange"):
            return (
                f"binding #{index + 1} (source {item['source']!r}, destination {item['destination']!r}) has "
                f"destination_type {item['destination_type']!r}; RabbitMQ refuses it (queue or exchange)"
            )
    return ""


def _object_problem(kind: str, index: int, item: Any, fields: dict[str, Wanted]) -> str:
    what = f"{SINGULAR[kind]} #{index + 1}"
    if not isinstance(item, dict):
        return f"{what} is not an object"
    known = ", ".join(f"{k} {item[k]!r}" for k in NAMING if isinstance(item.get(k), str))
    named = f"{what} ({known})" if known else what
    for field, wanted in fields.items():
        if field not in item:
            return f"{named} has no {field!r}"
        if not _is(item[field], wanted):
            return f"{named} has {field} {item[field]!r}; RabbitMQ takes {_names(wanted)}"
    for field, wanted in OPTIONAL[kind].items():
        if field in item and not _is(item[field], wanted) and not (field == "arguments" and item[field] == []):
            return f"{named} has {field} {item[field]!r}; RabbitMQ takes {_names(wanted)}"
    tags = item.get("tags") if kind == "users" else None
    if isinstance(tags, list) and not all(isinstance(tag, str) for tag in tags):
        return f"{named} has tags {tags!r}; RabbitMQ takes a list of strings"
    return ""


def _is(value: Any, wanted: Wanted) -> bool:
    """``isinstance``, but a boolean is not an integer here."""
    return isinstance(value, wanted) and not (wanted is int and isinstance(value, bool))


def _names(wanted: Wanted) -> str:
    return " or ".join(TYPE_NAMES[t] for t in (wanted if isinstance(wanted, tuple) else (wanted,)))
