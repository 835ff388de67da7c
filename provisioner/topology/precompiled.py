"""The topology JSON Schema compiled once into plain Python predicates: is a document valid, yes or no.

jsonschema takes a third of a second to import and validates a 10,000-object
topology in about a second; these closures answer the yes/no question in a
fraction of that. Only when a document is invalid does ``schema.py`` import
jsonschema to say why. A keyword this compiler does not know makes it give up
(``compile_schema`` returns None), and a value it is unsure about (a bool where
a number is expected, a float) counts as invalid: either way jsonschema decides,
so a wrong "valid" can only come from a bug here, never from a gap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]

# Keywords that never change validity.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "title", "description", "default", "examples", "markdownDescription", "$comment"}
)

TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),  # 1.0 is left to jsonschema
    "number": lambda v: isinstance(v, int) and not isinstance(v, bool),
}


# Keywords about a mapping's entries: checked together, in one pass over it (object_keywords).
OBJECT_KEYWORDS = frozenset({"properties", "additionalProperties", "required", "propertyNames", "minProperties"})


class Unsupported(Exception):
    """A schema keyword or form this compiler does not handle."""


def compile_schema(schema: dict[str, Any]) -> Predicate | None:
    """A predicate equivalent to validating against ``schema``, or None if the schema uses what we lack."""
    try:
        return _Compiler(schema).node(schema)
    except Unsupported:
        return None


def _plain(value: Any) -> bool:
    """Values whose == means JSON equality: strings and non-bool integers (bool == int is not JSON's)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _every(checks: list[Predicate]) -> Predicate:
    """All of the checks, as one call (a loop: a generator per value costs more than the checks)."""
    if len(checks) == 1:
        return checks[0]

    def check(v: Any) -> bool:
        for test in checks:  # noqa: SIM110  # a loop: all() of a generator costs more than the checks
            if not test(v):
                return False
        return True

    return check


def _any(checks: list[Predicate]) -> Predicate:
    """Any of the checks, as one call."""
    if len(checks) == 1:
        return checks[0]

    def check(v: Any) -> bool:
        for test in checks:  # noqa: SIM110  # a loop, as in _every
            if test(v):
                return True
        return False

    return check


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Predicate] = {}

    def node(self, schema: Any) -> Predicate:
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise Unsupported(repr(schema))
        checks: list[Predicate] = []
        for keyword, argument in schema.items():
            if keyword in ANNOTATIONS or keyword == "$defs" or keyword in OBJECT_KEYWORDS:
                continue
            make = getattr(self, "k_" + keyword.lstrip("$"), None)
            if make is None:
                raise Unsupported(keyword)
            checks.append(make(argument, schema))
        if OBJECT_KEYWORDS.intersection(schema):
            checks.append(self.object_keywords(schema))
        return _every(checks)

    def object_keywords(self, schema: dict[str, Any]) -> Predicate:
        """properties, additionalProperties, required, propertyNames and minProperties in one pass over a mapping."""
        if "patternProperties" in schema:
            raise Unsupported("patternProperties")
        named = {name: self.node(sub) for name, sub in schema.get("properties", {}).items()}
        extra = self.node(schema["additionalProperties"]) if "additionalProperties" in schema else None
        names = self.node(schema["propertyNames"]) if "propertyNames" in schema else None
        required = tuple(schema.get("required", ()))
        fewest = schema.get("minProperties", 0)

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            if len(v) < fewest:
                return False
            for name in required:
                if name not in v:
                    return False
            for name, value in v.items():
                if names is not None and not names(name):
                    return False
                test = named.get(name) if isinstance(name, str) else None
                if test is None:
                    test = extra
                if test is not None and not test(value):
                    return False
            return True

        return check

    def k_ref(self, ref: str, schema: dict[str, Any]) -> Predicate:
        if not ref.startswith("#/$defs/") or "/" in ref[len("#/$defs/") :]:
            raise Unsupported(ref)
        if ref not in self.refs:
            self.refs[ref] = lambda v: False  # a placeholder while a recursive definition compiles
            self.refs[ref] = self.node(self.root["$defs"][ref[len("#/$defs/") :]])
        refs = self.refs
        return lambda v: refs[ref](v)

    def k_type(self, names: str | list[str], schema: dict[str, Any]) -> Predicate:
        return _any([TYPES[name] for name in ([names] if isinstance(names, str) else names)])

    def k_const(self, const: Any, schema: dict[str, Any]) -> Predicate:
        if not _plain(const):
            raise Unsupported("const")
        return lambda v: _plain(v) and type(v) is type(const) and v == const

    def k_enum(self, choices: list[Any], schema: dict[str, Any]) -> Predicate:
        if not all(isinstance(c, str) for c in choices):
            raise Unsupported("enum")
        allowed = frozenset(choices)
        return lambda v: isinstance(v, str) and v in allowed

    def k_pattern(self, pattern: str, schema: dict[str, Any]) -> Predicate:
        search = re.compile(pattern).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    def k_minLength(self, size: int, schema: dict[str, Any]) -> Predicate:
        return lambda v: not isinstance(v, str) or len(v) >= size

    def k_minimum(self, bound: int, schema: dict[str, Any]) -> Predicate:
        return lambda v: not isinstance(v, (int, float)) or isinstance(v, bool) or v >= bound

    def k_maximum(self, bound: int, schema: dict[str, Any]) -> Predicate:
        return lambda v: not isinstance(v, (int, float)) or isinstance(v, bool) or v <= bound

    def k_items(self, items: Any, schema: dict[str, Any]) -> Predicate:
        if "prefixItems" in schema:
            raise Unsupported("prefixItems")
        test = self.node(items)

        def check(v: Any) -> bool:
            if isinstance(v, list):
                for item in v:
                    if not test(item):
                        return False
            return True

        return check

    def k_uniqueItems(self, unique: bool, schema: dict[str, Any]) -> Predicate:
        """Unique lists of plain values; a list holding anything else is left to jsonschema."""
        if not unique:
            return lambda v: True
        return lambda v: (
            not isinstance(v, list)
            or (all(_plain(item) for item in v) and len({(type(item), item) for item in v}) == len(v))
        )

    def k_oneOf(self, branches: list[Any], schema: dict[str, Any]) -> Predicate:
        """Only branches of disjoint types: then one-of is any-of, which a cautious "no" cannot turn into "yes"."""
        seen: set[str] = set()
        for branch in branches:
            kinds = branch.get("type") if isinstance(branch, dict) else None
            kinds = {kinds} if isinstance(kinds, str) else set(kinds or ())
            if not kinds or kinds & seen or ("number" in kinds | seen and "integer" in kinds | seen):
                raise Unsupported("oneOf with branches that may overlap")
            seen |= kinds
        return self.k_anyOf(branches, schema)

    def k_anyOf(self, branches: list[Any], schema: dict[str, Any]) -> Predicate:
        return _any([self.node(branch) for branch in branches])
