"""validate and the real broker agree: topologies generated from the schema's vocabulary, with the families
the broker refuses (arguments a queue type refuses, values outside their set, wrong types, unknown policy keys,
long routing keys, names with control characters) either fail validate at a line, or apply in full and re-plan
clean. Each example gets a fresh vhost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rabbit import INSTALLATION, api

import provisioner
from provisioner.errors import TopologyInvalid
from provisioner.topology.arguments import QUEUE_ARGUMENTS

LONG_KEY = "é" * 128  # 256 bytes of UTF-8 in 128 characters
GOOD_NAMES = ["q", "orders", "a b", "ü/%#", "emoji😀", "x" * 255, "é" * 127, "$$dollar", "{braces}", "'quote\""]
BAD_NAMES = ["amq.mine", " padded", "é" * 128, "a\nb", "a\u2028b", "\u202eevil", "bell\a", "${UNSET}"]
PRINTABLE = st.characters(whitelist_categories=("L", "N", "P", "S", "Zs"))
NAMES = st.one_of(st.sampled_from(GOOD_NAMES), st.text(PRINTABLE, min_size=1, max_size=6), st.sampled_from(BAD_NAMES))
GOOD_KEYS, BAD_KEYS = ["", "a.b", "order.#", "k" * 255, "é" * 127], [LONG_KEY, "k" * 256]
SMALL, BAD_INTS = [1, 5, 1000, "7"], [-1, 2**32, "many"]  # "7": a decimal string is taken as 7
# Each argument: (values the broker takes, values it refuses) and the queue types that take it.
ARGUMENTS: dict[str, tuple[list[Any], list[Any], str]] = {
    "x-max-length": (SMALL, BAD_INTS, "classic quorum"),
    "x-max-length-bytes": (SMALL, BAD_INTS, "classic quorum stream"),
    "x-message-ttl": ([0, *SMALL], BAD_INTS, "classic quorum"),
    "x-expires": ([60000, 3600000], [0, *BAD_INTS], "classic quorum"),  # a queue unused for 1 ms is gone
    "x-overflow": (["drop-head", "reject-publish"], ["sideways", 1], "classic quorum"),
    "x-max-priority": ([0, 10, 255], [256, -1], "classic"),
    "x-delivery-limit": (SMALL, BAD_INTS, "quorum"),
    "x-single-active-consumer": ([True, False], ["yes", 1], "classic quorum"),
    "x-queue-mode": (["default", "lazy"], ["eager"], "classic"),
    "x-dead-letter-strategy": (["at-most-once"], ["twice"], "quorum"),
    "x-quorum-initial-group-size": ([1, 3], [0, -1], "quorum"),
    "x-max-age": (["1D", "12h", "30m"], ["0D", "7d", "bogus", " 1D"], "stream"),
    "x-stream-max-segment-size-bytes": ([1000, 50000000], [0, -1], "stream"),
    "x-initial-cluster-size": ([1, 3], [0, -1], "stream"),
    "x-dead-letter-exchange": ([""], [5, True], "classic quorum"),
    "x-dead-letter-routing-key": (GOOD_KEYS, BAD_KEYS, "classic quorum"),
    "x-queue-leader-locator": (["client-local", "balanced"], ["nearest"], "quorum stream"),
    "x-queue-version": ([2], [0, 3], "classic"),  # 1: 4.3 refuses it (a readiness warning, not a refusal)
    "x-max-in-memory-length": (SMALL, BAD_INTS, "quorum"),
}
POLICY_KEYS: dict[str, tuple[list[Any], list[Any]]] = {
    "max-length": (SMALL, BAD_INTS),
    "message-ttl": (SMALL, BAD_INTS),
    "overflow": (["drop-head"], ["sideways"]),
    "alternate-exchange": (["ae"], [5]),
    "queue-leader-locator": (["balanced"], ["nearest"]),
    "max-age": (["1D"], ["bogus", "1d"]),
    "dead-letter-routing-key": (GOOD_KEYS, BAD_KEYS),
    "bogus-key": ([], [1]),
    "x-max-length": ([], [1]),
}

OPERATOR_KEYS: dict[str, tuple[list[Any], list[Any]]] = {
    "max-length": (SMALL, BAD_INTS),
    "expires": ([60000, "60000"], [0, "x"]),
    "delivery-limit": ([3], [-1]),
    "queue-mode": ([], ["lazy"]),
    "bogus": ([], [1]),
}


def pick(draw: st.DrawFn, good: list[Any], bad: list[Any]) -> Any:
    """A value the broker takes, or one time in five (or when there is none) one it refuses."""
    refused = not good or (bad and draw(st.integers(0, 4)) == 4)  # not 0: Hypothesis favours its simplest value
    return draw(st.sampled_from(bad if refused else good))


@st.composite
def queues(draw: st.DrawFn, exchanges: dict[str, Any]) -> dict[str, Any]:
    queue_type = draw(st.sampled_from(["classic", "quorum", "stream"]))
    takes = [name for name, (_, _, types) in ARGUMENTS.items() if queue_type in types.split()]
    names = draw(st.lists(st.sampled_from(takes), max_size=2, unique=True))
    if draw(st.integers(0, 4)) == 4:  # one the type refuses
        names.append(draw(st.sampled_from(sorted(set(ARGUMENTS) - set(takes)))))
    if INSTALLATION == "3.10" and queue_type == "classic" and "x-queue-leader-locator" in names:
        names.remove("x-queue-leader-locator")  # 4.0 takes it on classic queues, 3.10 refuses it (docs/validate.md)
    spec: dict[str, Any] = {"type": queue_type, "arguments": {}}
    for name in names:
        friendly = QUEUE_ARGUMENTS[name].friendly
        where = spec if friendly and draw(st.booleans()) else spec["arguments"]  # a friendly field or an x-argument
        where[friendly if where is spec else name] = pick(draw, *ARGUMENTS[name][:2])
    if draw(st.integers(0, 3)) == 3:  # settings through a policy of the queue's own
        keys = draw(st.lists(st.sampled_from(sorted(POLICY_KEYS)), min_size=1, max_size=2, unique=True))
        spec["policy"] = {key: pick(draw, *POLICY_KEYS[key]) for key in keys}
    if draw(st.integers(0, 3)) == 3:
        spec["dead_letter"] = {"routing_key": pick(draw, GOOD_KEYS[1:], BAD_KEYS)} if draw(st.booleans()) else True
    targets = sorted(exchanges)
    if targets:
        source = draw(st.sampled_from(targets))
        binding: dict[str, Any] = {"exchange": source, "routing_key": pick(draw, GOOD_KEYS, BAD_KEYS)}
        if exchanges[source]["type"] == "headers":
            binding["arguments"] = {"x-match": pick(draw, ["all", "any-with-x"], ["most", 1]), "k": "v"}
        spec["bindings"] = [binding]
    return spec


@st.composite
def topologies(draw: st.DrawFn) -> dict[str, Any]:
    exchanges: dict[str, dict[str, Any]] = {
        name: {"type": draw(st.sampled_from(["direct", "topic", "fanout", "headers"]))}
        for name in draw(st.lists(NAMES, max_size=2, unique=True))
    }
    for spec in exchanges.values():
        if draw(st.booleans()):
            spec["arguments"] = {"alternate-exchange": pick(draw, ["ae"], [7, True])}
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    document: dict[str, Any] = {
        "version": 1,
        "exchanges": exchanges,
        "queues": {n: draw(queues(exchanges)) for n in names},
    }
    if draw(st.integers(0, 3)) == 3:  # an operator policy: keys both 3.10 and 4.0 take, or not
        keys = draw(st.lists(st.sampled_from(sorted(OPERATOR_KEYS)), min_size=1, max_size=2, unique=True))
        definition = {key: pick(draw, *OPERATOR_KEYS[key]) for key in keys}
        document["operator_policies"] = {"cap": {"pattern": "^no-queue-is-named-so$", "definition": definition}}
    if draw(st.integers(0, 3)) == 3:  # a queue limit, met or not by the queues declared
        document["limits"] = {"max-queues": draw(st.sampled_from([-1, 0, 1, 2, 3, 10]))}
    if draw(st.booleans()):  # free text: line breaks and tabs are taken, other controls refused
        document["description"] = pick(draw, ["one line", "two\nlines", "a\ttab", "é😀"], ["bell\a", "\u202eevil"])
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(sorted(POLICY_KEYS)), min_size=1, max_size=2, unique=True))
        definition = {key: pick(draw, *POLICY_KEYS[key]) for key in keys}
        pattern = pick(draw, ["^no-queue-is-named-so$", r"(?<n>zz)\h-none$", "x(?i)y-none$"], ["(", "a**", "[z-a]"])
        document["policies"] = {"limits": {"pattern": pattern, "definition": definition}}
    return document


@pytest.fixture
def fresh_vhosts(broker: None) -> Iterator[list[str]]:
    """Vhost names handed out to the examples; every one that was made is deleted afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        api("DELETE", f"vhosts/{quote(name, safe='')}")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(document=topologies(), suffix=st.sampled_from(["", "/ü%#", " a b", "😀"]))
def test_what_validate_accepts_applies_and_what_it_refuses_is_at_a_line(
    document: dict[str, Any], suffix: str, fresh_vhosts: list[str], tmp_path: Path
) -> None:
    vhost = f"test-agree-{uuid.uuid4().hex[:10]}{suffix}"
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump({**document, "vhost": vhost}, allow_unicode=False, sort_keys=False))
    try:
        topology = provisioner.load_topology(path, environ={})
    except TopologyInvalid as refused:
        event("refused by validate")
        for problem in refused.problems:
            assert problem.line >= 2, str(problem)  # at the line that writes it, never the file's top
            assert str(problem).isprintable() and "internal error" not in str(problem), str(problem)
        return
    event("accepted and applied")
    fresh_vhosts.append(vhost)
    broker = provisioner.connect(retry_seconds=0)
    provisioner.apply_topology(topology, broker)  # any refusal here is a disagreement: it raises
    assert provisioner.make_plan(topology, broker).in_sync


def test_a_vhost_named_beyond_ascii_applies_and_replans_clean(fresh_vhosts: list[str]) -> None:
    """RabbitMQ 4.0 answers 500 to such a vhost's definitions: it is read kind by kind."""
    vhost = f"test-agree-{uuid.uuid4().hex[:10]}-ü😀"
    fresh_vhosts.append(vhost)
    topology = provisioner.parse_topology(
        f"version: 1\nvhost: {vhost}\nexchanges:\n  é: {{type: topic}}\n"
        "queues:\n  ü:\n    bindings: [{exchange: é, routing_key: 'ключ.#'}]\n    dead_letter: true\n",
        environ={},
    )
    broker = provisioner.connect(retry_seconds=0)
    provisioner.apply_topology(topology, broker)
    assert provisioner.make_plan(topology, broker).in_sync
    assert {q.name for q in provisioner.read_live(topology, broker)[vhost].topology.queues} == {"ü", "ü.dead"}
