"""The precompiled schema predicate says "valid" exactly when jsonschema finds no error.

``schema_problems`` trusts the predicate's "valid" without asking jsonschema, so
a wrong "valid" would let a bad document through; a wrong "invalid" would only
be slow. Both directions are checked on the shipped topologies and on the fuzz
tests' documents near the schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from test_fuzz_loader import CLOSE_DOCUMENT, DOCUMENT

from provisioner.topology.documents import read_document
from provisioner.topology.precompiled import compile_schema
from provisioner.topology.schema import _is_valid, schema_problems, topology_schema

ROOT = Path(__file__).resolve().parent.parent.parent
JSONSCHEMA = Draft202012Validator(topology_schema())
IS_VALID = _is_valid()


def agree(document: Any) -> None:
    expected = JSONSCHEMA.is_valid(document)
    assert IS_VALID is not None
    assert IS_VALID(document) == expected, document


def test_the_shipped_schema_compiles() -> None:
    assert IS_VALID is not None


@pytest.mark.parametrize("path", sorted((ROOT / "topologies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_topologies_are_valid_without_jsonschema(path: Path) -> None:
    document = read_document(path)
    assert IS_VALID is not None and IS_VALID(document.data)
    assert schema_problems(document) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(DOCUMENT, CLOSE_DOCUMENT))
def test_predicate_agrees_with_jsonschema(document: dict[str, Any]) -> None:
    agree(document)


@pytest.mark.parametrize(
    "document",
    [
        {"version": True},  # True == 1 in Python, not in JSON
        {"version": 1.0},  # a float the predicate leaves to jsonschema (which accepts it)
        {"version": 1, "queues": {"q": {"max_priority": True}}},
        {"version": 1, "queues": {"q": {"max_priority": 256}}},
        {"version": 1, "queues": {"q": {"dead_letter": {"suffix": ""}}}},
        {"version": 1, "queues": {1: {}}},  # a YAML key that is not a string
        {"version": 1, "queues": {"q": {"bindings": [{"exchange": "x", "routing_key": None}]}}},
        {"version": 1, "exchanges": {"x": {"type": "x-delayed-message"}}},
        {"version": 1, "exchanges": {"x": {"type": "bogus"}}},
        {"version": 1, "vhosts": {"a": {"queues": {"q": None}}}},
    ],
)
def test_edge_values(document: dict[str, Any]) -> None:
    if isinstance(document.get("version"), float):
        assert JSONSCHEMA.is_valid(document)
        assert IS_VALID is not None and not IS_VALID(document)  # unsure: jsonschema decides
        return
    agree(document)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {"^a": {}}},
        {"oneOf": [{"type": "integer"}, {"type": "number"}]},
        {"$ref": "https://example.com/other.json"},
        {"if": {"type": "string"}},
    ],
)
def test_what_it_does_not_know_it_leaves_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_schema(schema) is None
