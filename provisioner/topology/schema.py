"""Validate a loaded document against the JSON Schema in provisioner/schema/ (the one copy; schemas/ links to it).

A valid document is recognised by the schema's precompiled predicate; jsonschema
(slow to import, slower to run) is loaded only to explain an invalid one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import Problem
from provisioner.topology.arguments import BY_POLICY_KEY, QUEUE_ARGUMENTS
from provisioner.topology.documents import Document, collector_paused
from provisioner.topology.precompiled import Predicate, compile_schema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError


@cache
def topology_schema() -> dict[str, Any]:
    """The topology JSON Schema, as shipped in the package (schemas/topology.schema.json is a link to it).

    Read beside this module, not through importlib.resources: that import alone
    (zipfile, tempfile, shutil) costs more than reading the file.
    """
    text = (Path(__file__).parent.parent / "schema" / "topology.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(topology_schema())


@cache
def _is_valid() -> Predicate | None:
    return compile_schema(topology_schema())


def schema_problems(document: Document) -> list[Problem]:
    """Every schema violation, each at the line of the offending value."""
    is_valid = _is_valid()
    if is_valid is not None and is_valid(document.data) and not _has_non_finite(document.data):
        return []
    problems = []
    with collector_paused():  # the validator makes many short-lived objects and no cycles
        errors = list(_validator().iter_errors(document.data))
    for error in errors:
        for leaf in _leaves(error):
            path = list(leaf.absolute_path)
            if leaf.validator == "additionalProperties":
                extra = sorted(set(leaf.instance) - set(leaf.schema.get("properties", {})), key=str)
                problems.append(document.problem([*path, extra[0]], _message(leaf), at_key=True))
            else:
                problems.append(document.problem(path, _message(leaf)))
    for path in _non_finite(document.data, []):
        problems.append(document.problem(path, "must be a finite number, not NaN or infinity"))
    return problems


def _has_non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity is anywhere in ``value``: the common "no" in one flat pass."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is str:
            continue
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return True
    return False


def _non_finite(value: Any, path: list[Any]) -> Iterator[list[Any]]:
    """Paths of NaN and infinite numbers: JSON Schema's bounds never catch NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, [*path, index])


def wants_text(path: list[Any]) -> bool:
    """Whether the schema (or, in argument tables and policies, the argument table) takes only a string here."""
    if len(path) >= 2 and path[-2] in ("arguments", "definition", "policy") and isinstance(path[-1], str):
        known = QUEUE_ARGUMENTS.get(path[-1]) or BY_POLICY_KEY.get(path[-1])
        if known is not None:
            return known.kind == "str"
    schemas = [topology_schema()]
    for step in path:
        schemas = [child for schema in schemas for branch in _branches(schema) for child in _children(branch, step)]
    kinds = {kind for schema in schemas for branch in _branches(schema) for kind in _types(branch)}
    return bool(schemas) and kinds == {"string"}


def _resolve(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    while "$ref" in schema:
        schema = topology_schema()["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _branches(schema: Any) -> list[dict[str, Any]]:
    schema = _resolve(schema)
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    return [b for alt in alternatives for b in _branches(alt)] if alternatives else [schema]


def _children(schema: dict[str, Any], step: Any) -> list[Any]:
    kinds = _types(schema)
    if "any" not in kinds and ("array" if isinstance(step, int) else "object") not in kinds:
        return []  # this branch (dead_letter: true, say) holds no children
    if isinstance(step, int):
        return [schema["items"]] if "items" in schema else []
    if step in schema.get("properties", {}):
        return [schema["properties"][step]]
    extra = schema.get("additionalProperties", {})
    return [extra] if extra is not False else []


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema admits ("any" when it says nothing)."""
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        return {"string" if isinstance(v, str) else "other" for v in values}
    kind = schema.get("type")
    if kind is None:
        return {"any"}
    return set(kind) if isinstance(kind, list) else {kind}


def _leaves(error: ValidationError) -> list[ValidationError]:
    """For oneOf/anyOf, report the branch that came closest rather than a wall of text."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        deepest = max(len(e.absolute_path) for e in error.context)
        if deepest > len(error.absolute_path):
            return [e for e in error.context if len(e.absolute_path) == deepest]
        of_the_right_type = [e for e in error.context if e.validator != "type"]
        if of_the_right_type:
            return of_the_right_type
    return [error]


URI_PATTERN = "^amqps?://"  # federation and shovel URIs (provisioner/schema/topology.schema.json, $defs/uri)


def _message(error: ValidationError) -> str:
    """One short line per violation, in the words a user of the file would use."""
    path = list(error.absolute_path)
    field = path[-1] if path and isinstance(path[-1], str) else None
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unknown field {', '.join(map(repr, extra))}; allowed: {allowed}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "enum":
        choices = " | ".join(json.dumps(c) for c in error.validator_value)
        return f"{json.dumps(error.instance, default=str)} is not one of {choices}"
    if error.validator == "const":
        return f"must be {json.dumps(error.validator_value)}, not {json.dumps(error.instance, default=str)}"
    if error.validator == "type":
        expected = error.validator_value
        expected_text = " or ".join(expected) if isinstance(expected, list) else expected
        got = _type_name(error.instance)
        return f"{field + ' ' if field else ''}must be {expected_text}, not {got}"
    if error.validator == "pattern" and error.validator_value == URI_PATTERN:
        return "must be an amqp:// or amqps:// URI (the value is not shown: it may hold a password)"
    if error.validator == "pattern" and field == "type":
        return f"{error.instance!r} is not an exchange type (direct | fanout | topic | headers | x-...)"
    if error.validator == "pattern" and len(error.absolute_path) > 1 and error.absolute_path[-2] == "tags":
        return (
            f"tag {error.instance!r} holds a comma or a space at an end: the broker splits tags on commas and trims "
            "them, so it would never hold this tag as written"
        )
    if error.validator == "minLength" and field == "exchange":
        return 'the default exchange ("") cannot be bound; every queue already receives its name as routing key there'
    if error.validator == "oneOf" and field == "dead_letter":
        return "dead_letter must be true, false or a mapping (suffix, exchange, queue, routing_key, queue_type, via)"
    return error.message


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    for kind, name in (
        (dict, "a mapping"),
        (list, "a list"),
        (bool, "a boolean"),
        (str, "a string"),
        (int, "an integer"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__
