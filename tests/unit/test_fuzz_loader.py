"""Property tests: whatever document the loader is given, it returns a Topology or raises
TopologyInvalid whose every problem has a line and a path; never a traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.errors import TopologyInvalid
from provisioner.topology import Topology, load

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = st.one_of(
    st.sampled_from(["orders", "celery", "example", "x.dead", "amq.topic", "amq.custom", "", " ", "a.b.c"]),
    st.sampled_from(["a" * 255, "a" * 256, "é" * 128, "ü" * 127, "名前", "queue\n", "${NAME}", "${NAME:-x}"]),
    st.text(min_size=0, max_size=40),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    NAMES,
)
WILD = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The right kind of value most of the time, anything at all sometimes."""
    return st.one_of(value, value, value, WILD)


def fields(spec: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with a random subset of the known fields and, now and then, an unknown one."""
    optional = st.fixed_dictionaries({}, optional={key: maybe(value) for key, value in spec.items()})
    extra = st.dictionaries(st.sampled_from(["colour", "typ", "Type", "x-max-length"]), WILD, max_size=1)
    return st.builds(lambda a, b: {**a, **b}, optional, st.one_of(st.just({}), extra))


ARGUMENTS = st.dictionaries(
    st.sampled_from(["x-max-length", "x-message-ttl", "x-queue-type", "x-dead-letter-exchange", "x-overflow", "x"]),
    SCALARS,
    max_size=3,
)
BINDING = fields({"exchange": NAMES, "routing_key": st.text(max_size=10), "arguments": ARGUMENTS})
DEAD_LETTER = st.one_of(
    st.booleans(),
    fields(
        {
            "suffix": NAMES,
            "exchange": NAMES,
            "queue": NAMES,
            "routing_key": st.text(max_size=10),
            "via": st.sampled_from(["arguments", "policy", "both"]),
            "queue_type": st.sampled_from(["classic", "quorum", "stream"]),
        }
    ),
)
EXCHANGE = fields(
    {
        "type": st.sampled_from(["direct", "topic", "fanout", "headers", "x-delayed-message", "bogus"]),
        "durable": st.booleans(),
        "auto_delete": st.booleans(),
        "internal": st.booleans(),
        "arguments": ARGUMENTS,
        "bindings": st.lists(BINDING, max_size=2),
    }
)
QUEUE = fields(
    {
        "type": st.sampled_from(["classic", "quorum", "stream", "lazy"]),
        "durable": st.booleans(),
        "auto_delete": st.booleans(),
        "arguments": ARGUMENTS,
        "max_length": st.integers(min_value=-5, max_value=10**6),
        "message_ttl": st.integers(min_value=-5, max_value=10**6),
        "max_priority": st.integers(min_value=0, max_value=300),
        "overflow": st.sampled_from(["drop-head", "reject-publish", "reject-publish-dlx", "nope"]),
        "delivery_limit": st.integers(min_value=-1, max_value=100),
        "bindings": st.lists(BINDING, max_size=3),
        "dead_letter": DEAD_LETTER,
    }
)
TASK = fields({"queue": NAMES, "consume": st.sampled_from(["celery", "foreign", "other"]), "retry": WILD})
BODY = fields(
    {
        "exchanges": st.dictionaries(NAMES, EXCHANGE, max_size=3),
        "queues": st.dictionaries(NAMES, QUEUE, max_size=3),
        "policies": st.dictionaries(NAMES, WILD, max_size=1),
    }
)
DOCUMENT = st.builds(
    lambda version, body, extra: {**version, **body, **extra},
    st.one_of(st.just({"version": 1}), st.just({"version": 1}), st.fixed_dictionaries({"version": WILD})),
    BODY,
    fields(
        {
            "vhost": NAMES,
            "tasks": st.dictionaries(NAMES, TASK, max_size=2),
            "celery": fields({"default_queue": NAMES, "vhost": NAMES}),
            "vhosts": st.dictionaries(NAMES, BODY, max_size=2),
        }
    ),
)

# Near-valid documents: well-typed fields and names from a small pool, so that references,
# dead-letter expansion, duplicates and queue-type rules really get exercised.
POOL = st.sampled_from(["orders", "billing", "orders.dead", "billing.dead", "amq.topic", "amq.direct", "amq.x"])
CLOSE_BINDING = st.fixed_dictionaries({"exchange": POOL}, optional={"routing_key": st.sampled_from(["", "a.#", "b"])})
CLOSE_DEAD_LETTER = st.one_of(
    st.booleans(),
    st.fixed_dictionaries(
        {},
        optional={
            "suffix": st.sampled_from(["dead", "dlq", "x"]),
            "exchange": POOL,
            "queue": POOL,
            "via": st.sampled_from(["arguments", "policy"]),
        },
    ),
)
CLOSE_QUEUE = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["classic", "quorum", "stream"]),
        "durable": st.booleans(),
        "auto_delete": st.booleans(),
        "max_priority": st.integers(min_value=1, max_value=10),
        "overflow": st.sampled_from(["drop-head", "reject-publish"]),
        "bindings": st.lists(CLOSE_BINDING, max_size=2),
        "dead_letter": CLOSE_DEAD_LETTER,
    },
)
CLOSE_DOCUMENT = st.fixed_dictionaries(
    {"version": st.just(1)},
    optional={
        "exchanges": st.dictionaries(POOL, st.fixed_dictionaries({"type": st.sampled_from(["direct", "topic"])})),
        "queues": st.dictionaries(POOL, CLOSE_QUEUE, max_size=3),
        "tasks": st.dictionaries(st.sampled_from(["a.t", "b.*"]), st.fixed_dictionaries({"queue": POOL})),
        "celery": st.fixed_dictionaries({}, optional={"default_queue": POOL}),
    },
)


def check(text: str | bytes) -> None:
    """Load the text from a file: a Topology, or TopologyInvalid with located problems."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "topology.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            topology = load([path], environ={"NAME": "orders"})
        except TopologyInvalid as error:
            assert error.problems, "TopologyInvalid without a problem"
            for problem in error.problems:
                assert problem.line >= 1 and problem.column >= 1, problem
                assert isinstance(problem.path, str), problem
                assert problem.message.strip(), problem
                assert "\n" not in str(problem), problem  # issue 2: each error is one line
            return
        assert isinstance(topology, Topology)


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    check(text)


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    check(data)


@SETTINGS
@given(DOCUMENT)
def test_documents_near_the_schema_as_yaml(document: dict[str, Any]) -> None:
    check(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


@SETTINGS
@given(DOCUMENT)
def test_documents_near_the_schema_as_json(document: dict[str, Any]) -> None:
    check(json.dumps(document, ensure_ascii=False))


@SETTINGS
@given(CLOSE_DOCUMENT)
def test_near_valid_documents(document: dict[str, Any]) -> None:
    check(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


@SETTINGS
@given(DOCUMENT, st.integers(min_value=0, max_value=400), st.sampled_from(["", ":", "- ", "{", "'", "&a", "*a", "\t"]))
def test_documents_broken_in_the_middle(document: dict[str, Any], cut: int, junk: str) -> None:
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    check(text[:cut] + junk + text[cut:])


# Found by the properties above (issue 2 wants each error on one line): kept as regressions.
@pytest.mark.parametrize("text", ["\x1b", 'version: 1\nvhosts:\n  "a\\nb": []\n'], ids=["control-char", "newline-name"])
def test_every_problem_is_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "topology.yaml"
        path.write_text(text)
        with pytest.raises(TopologyInvalid) as caught:
            load([path], environ={})
    assert all("\n" not in str(problem) for problem in caught.value.problems), caught.value


# Issue 10: odd scalars where arguments, fields and keys go, and aliases of any shape.
ODD_SCALARS = st.sampled_from(
    [
        "!!binary aGVsbG8=",
        "2024-01-01",
        "2024-01-01 10:00:00",
        ".nan",
        ".inf",
        "-.inf",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999999999",
        "'--5'",
        "'²'",
        "'12abc'",
        "'-0'",
        "0x1F",
        "0o17",
        "1_000",
        "190:20:30",
        "yes",
        "off",
        "~",
        "1e3",
        "+5",
        "-5",
        "1.5",
        "!!float 1",
        "!!str 5",
        "!!int '7'",
        "[1, 2.5, x]",
        "{a: .nan}",
        "''",
        '"\\u00b2"',
    ]
)
ODD_PLACES = st.sampled_from(
    [
        "queues:\n  q:\n    arguments:\n      {key}: {value}\n",
        "queues:\n  q:\n    {key}: {value}\n",
        "queues:\n  q:\n    policy:\n      {key}: {value}\n",
        "policies:\n  p:\n    pattern: q\n    definition:\n      {key}: {value}\n",
        "exchanges:\n  e:\n    type: headers\n    arguments:\n      {key}: {value}\n",
        "queues:\n  {value}: {{}}\n",
        "vhost: {value}\n",
        "tasks:\n  t:\n    queue: q\n    retry:\n      {key}: {value}\n",
    ]
)
ODD_KEYS = st.sampled_from(
    [
        "x-max-length",
        "x-message-ttl",
        "x-expires",
        "x-single-active-consumer",
        "x-overflow",
        "x-plugin",
        "max_length",
        "message_ttl",
        "single_active_consumer",
        "max-length",
        "message-ttl",
        "delay",
        "max_retries",
        "yes",
        "~",
        "007",
    ]
)


@SETTINGS
@given(st.lists(st.tuples(ODD_PLACES, ODD_KEYS, ODD_SCALARS), min_size=1, max_size=3))
def test_odd_scalars_in_every_place(places: list[tuple[str, str, str]]) -> None:
    for place, key, value in places:
        check("version: 1\n" + place.format(key=key, value=value))


ALIAS_SHAPES = st.sampled_from(
    [
        "queues:\n  a: &q {{max_length: {n}}}\n  b: *q\n  c: {{<<: *q, message_ttl: {n}}}\n",
        "queues: &all\n  a: {{}}\nvhosts:\n  x: {{queues: *all}}\n",
        "queues:\n  a: &q\n    arguments: &args {{x-max-length: {n}}}\n  b: {{arguments: *args}}\n",
        "queues:\n  a: {{bindings: &b [{{exchange: amq.topic}}]}}\n  b: {{bindings: *b}}\n",
        "queues: &q {{a: *q}}\n",
        "queues:\n  a: {{<<: [*nothing]}}\n",
        "queues:\n  a: {{<<: 5}}\n",
        "queues:\n  <<: {{a: {{}}}}\n",
    ]
)


@SETTINGS
@given(ALIAS_SHAPES, st.integers(-3, 2**64), st.integers(1, 12), st.integers(1, 12))
def test_aliases_of_any_shape(shape: str, number: int, depth: int, width: int) -> None:
    check("version: 1\n" + shape.format(n=number))
    bomb = "version: 1\nl0: &l0 [x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]\n" for i in range(1, depth + 1)
    )
    check(bomb)
    merges = "version: 1\nm0: &m0 {k: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * width)}], k{i}: 1}}\n" for i in range(1, depth + 1)
    )
    check(merges)
