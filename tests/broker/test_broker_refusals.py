"""What the broker refuses, validate refuses first, at its line and in words; a refusal that slips through
anyway (the library applies what it is given) is one line of words: no HTML entities, Erlang terms or
character lists, no 'connection lost (ShortStringTooLong)'."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rabbit import DENY_DEPRECATED

import provisioner
from provisioner.broker.words import broker_words
from provisioner.errors import BrokerError, PlanProblem, TopologyInvalid
from provisioner.topology import load
from provisioner.topology.model import Binding, Policy, Queue, Topology, VHost

# (the queue or section written at line 3, the words the refusal says)
CASES = {
    "stream with a length limit": ("q: {type: stream, max_length: 5}", "x-max-length is not supported on stream"),
    "stream with overflow": ("q: {type: stream, overflow: drop-head}", "x-overflow is not supported on stream"),
    "stream with single active consumer": (
        "q: {type: stream, single_active_consumer: true}",
        "x-single-active-consumer is not supported on stream",
    ),
    "stream with a queue version": (
        "q: {type: stream, arguments: {x-queue-version: 2}}",
        "x-queue-version is not supported on stream",
    ),
    "stream with a dead-letter routing key": (
        "q: {type: stream, arguments: {x-dead-letter-routing-key: k}}",
        "x-dead-letter-routing-key is not supported on stream",
    ),
    "classic with an initial cluster size": (
        "q: {initial_cluster_size: 3}",
        "x-quorum-initial-group-size is not supported on classic",
    ),
    "classic with a stream cluster size": (
        "q: {arguments: {x-initial-cluster-size: 3}}",
        "x-initial-cluster-size is not supported on classic",
    ),
    "quorum with a queue version": (
        "q: {type: quorum, arguments: {x-queue-version: 2}}",
        "x-queue-version is not supported on quorum",
    ),
    "quorum with a priority": ("q: {type: quorum, max_priority: 5}", "x-max-priority is not supported on quorum"),
    "quorum with a master locator": (
        "q: {type: quorum, arguments: {x-queue-master-locator: min-masters}}",
        "x-queue-master-locator is not supported on quorum",
    ),
    "leader locator outside its set": (
        "q: {type: quorum, arguments: {x-queue-leader-locator: nearest}}",
        "x-queue-leader-locator must be one of client-local | balanced | random | least-leaders",
    ),
    "overflow outside its set": ("q: {arguments: {x-overflow: sideways}}", "x-overflow must be one of drop-head"),
    "queue mode outside its set": (
        "q: {arguments: {x-queue-mode: eager}}",
        "x-queue-mode must be one of default | lazy",
    ),
    "max-age not in the broker's form": ("q: {type: stream, max_age: 0D}", "max_age must be a positive whole number"),
    "x-match outside its set": (
        "q: {bindings: [{exchange: amq.headers, arguments: {x-match: most}}]}",
        "x-match must be one of all | any | all-with-x | any-with-x",
    ),
    "x-match of the wrong type": (
        "q: {bindings: [{exchange: amq.headers, arguments: {x-match: 1}}]}",
        "x-match must be one of",
    ),
    "routing key over 255 bytes": (
        f"q: {{bindings: [{{exchange: amq.direct, routing_key: {'é' * 128}}}]}}",
        "routing key is 256 bytes (UTF-8); AMQP carries at most 255",
    ),
    "dead-letter routing key over 255 bytes": (
        f"q: {{dead_letter: {{routing_key: {'k' * 256}}}}}",
        "routing_key is 256 bytes (UTF-8); the broker takes at most 255",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_refuses_what_the_broker_refuses_at_its_line(tmp_path: Path, case: str) -> None:
    queue, words = CASES[case]
    path = tmp_path / "t.yaml"
    path.write_text(f"version: 1\nqueues:\n  {queue}\n")
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={})
    found = [p for p in caught.value.problems if words in p.message]
    assert found and all(p.line == 3 for p in found), [str(p) for p in caught.value.problems]


SECTIONS = {
    "max-queues below the queues the topology declares": (
        "limits: {max-queues: 1}\nqueues:\n  q: {dead_letter: true}",
        2,
        "max-queues 1 leaves no room for the 2 queues the topology declares",
    ),
    "alternate exchange of the wrong type": (
        "exchanges:\n  e: {type: direct, arguments: {alternate-exchange: 5}}",
        3,
        "alternate-exchange names an exchange: it must be a string",
    ),
    "unknown policy key": (
        "policies:\n  p: {pattern: '^q$', definition: {bogus-key: 1}}",
        3,
        "'bogus-key' is not a policy setting the broker knows",
    ),
    "an argument's name as a policy key": (
        "policies:\n  p: {pattern: '^q$', definition: {x-max-length: 1}}",
        3,
        "(a policy names it 'max-length')",
    ),
    "unknown operator policy key": (
        "operator_policies:\n  p: {pattern: '^q$', definition: {queue-mode: lazy}}",
        3,
        "'queue-mode' is not an operator policy setting",
    ),
    "policy pattern that does not compile": (
        "policies:\n  p: {pattern: 'a**', definition: {max-length: 1}}",
        3,
        "pattern is not a regular expression",
    ),
    "permission pattern that does not compile": (
        "permissions:\n  guest: {configure: '(', write: '.*', read: '.*'}",
        3,
        "configure pattern '(' is not a regular expression",
    ),
    "topic permission pattern that does not compile": (
        "topic_permissions:\n  guest:\n    - {exchange: amq.topic, write: '[a-', read: '.*'}",
        4,
        "write pattern '[a-' is not a regular expression",
    ),
    "password hash that is not base64": (
        "users:\n  u: {password_hash: 'not base64!', tags: []}",
        3,
        "password_hash is not base64",
    ),
    "password hash of the wrong length": (
        "users:\n  u: {password_hash: YWJj, tags: []}",
        3,
        "password_hash holds 3 bytes; rabbit_password_hashing_sha256 stores 36",
    ),
}


@pytest.mark.parametrize("case", sorted(SECTIONS))
def test_validate_refuses_what_the_broker_refuses_in_other_sections(tmp_path: Path, case: str) -> None:
    section, line, words = SECTIONS[case]
    path = tmp_path / "t.yaml"
    path.write_text(f"version: 1\n{section}\n")
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={})
    found = [p for p in caught.value.problems if words in p.message]
    assert found and all(p.line == line for p in found), [str(p) for p in caught.value.problems]


ACCEPTED_PATTERNS = [
    *("(?<name>a)", r"\p{L}+", r"\pL", "(?'n'x)", "(?<=a)b", "(?<!a)b", "a++", "(?>a)", r"\\p{L}"),
    *("a(?i)b", "(?<=a|bc)d", "[[:alpha:]]", r"\h", r"a\z", "(*UTF8)a", "(?|a)"),  # PCRE only
]


@pytest.mark.parametrize("pattern", ACCEPTED_PATTERNS)
def test_patterns_pcre_compiles_are_accepted(tmp_path: Path, pattern: str) -> None:
    path = tmp_path / "t.yaml"
    quoted = pattern.replace("'", "''")
    path.write_text(f"version: 1\npermissions:\n  guest: {{configure: '{quoted}', write: '.*', read: '.*'}}\n")
    assert load([path], environ={}).accounts.permissions


def test_a_valid_password_hash_of_each_algorithm_is_accepted(tmp_path: Path) -> None:
    import base64

    path = tmp_path / "t.yaml"
    users = {"sha256": 36, "sha512": 68, "md5": 20}
    body = "".join(
        f"  {name}: {{password_hash: {base64.b64encode(bytes(size)).decode()}, "
        f"hashing_algorithm: rabbit_password_hashing_{name}, tags: []}}\n"
        for name, size in users.items()
    )
    path.write_text(f"version: 1\nusers:\n{body}")
    users_loaded = load([path], environ={}).accounts.users
    assert users_loaded is not None and len(users_loaded) == 3


# The broker's refusals as it words them (3.10 and 4.0), and what is printed of them.
RECORDED = {
    "<html><head><title>404</title></head><body><h1>Not Found</h1><p>no such &lt;page&gt;</p></body></html>": (
        "Not Found no such <page>"
    ),
    'Validation failed\n\n[{&lt;&lt;"bogus-key"&gt;&gt;,1}] are not recognised policy settings\n': (
        "'bogus-key' (1) are not recognised policy settings"
    ),
    'Validation failed\n\n&lt;&lt;"bogus"&gt;&gt; is not a valid queue-mode value\n': (
        "'bogus' is not a valid queue-mode value"
    ),
    "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost 'v': {max_value_exceeded,256}": (
        "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost 'v': above the maximum (256)"
    ),
    'PRECONDITION_FAILED - Invalid x-match field value <<"bogus">>; expected all, any': (
        "PRECONDITION_FAILED - Invalid x-match field value 'bogus'; expected all, any"
    ),
}


@pytest.mark.parametrize("reason", sorted(RECORDED))
def test_recorded_refusals_read_as_words(reason: str) -> None:
    assert broker_words(reason) == RECORDED[reason]


def test_a_character_list_reads_as_text() -> None:
    said = broker_words(["invalid_regexp", [40], [[109, 105, 115, 115, 105, 110, 103, 32, 41], 1]])
    assert said == "not a valid regular expression: '(': 'missing )' at 1"


def plain_words(text: str) -> bool:
    """One printable line with no HTML entity, Erlang binary, character list or tagged tuple in it."""
    return (
        text.isprintable()
        and "&lt;" not in text
        and "&gt;" not in text
        and "<<" not in text
        and re.search(r"\[\d+(,\s*\d+){2,}\]", text) is None
        and re.search(r"\{[a-z_]+,", text) is None
    )


def test_a_management_refusal_is_one_line_of_words(vhost: str) -> None:
    broker = provisioner.connect(retry_seconds=0)
    for definition in ({"bogus-key": 1}, {"queue-mode": "bogus"}, {"max-length": "x"}):
        policy = Policy(vhost, "p", "^q$", definition)
        with pytest.raises(BrokerError) as caught:
            provisioner.apply_topology(Topology(vhosts=(VHost(vhost),), policies=(policy,)), broker)
        assert plain_words(str(caught.value)), str(caught.value)
        assert "internal error" not in str(caught.value)
    with pytest.raises(BrokerError) as caught:
        broker.management.put(f"permissions/{vhost}/guest", {"configure": "(", "write": "", "read": ""})
    assert plain_words(str(caught.value)) and "regular expression" in str(caught.value), str(caught.value)


def test_an_amqp_refusal_and_a_long_routing_key_are_one_line_of_words(vhost: str) -> None:
    broker = provisioner.connect(retry_seconds=0)
    cases = [
        Topology(vhosts=(VHost(vhost),), queues=(Queue(vhost, "q", arguments={"x-max-priority": 300}),)),
        Topology(
            vhosts=(VHost(vhost),),
            queues=(Queue(vhost, "q2"),),
            bindings=(Binding(vhost, "amq.direct", "q2", routing_key="é" * 128),),
        ),
    ]
    said = []
    for topology in cases:
        with pytest.raises(BrokerError) as caught:
            provisioner.apply_topology(topology, broker)
        said.append(str(caught.value))
    assert all(plain_words(text) for text in said), said
    assert "above the maximum" in said[0] or "max" in said[0], said[0]
    assert "longer than the 255 bytes AMQP carries" in said[1] and "connection lost" not in said[1], said[1]


def test_a_refusal_that_closes_the_connection_is_in_words(vhost: str) -> None:
    """A denied deprecated feature closes the connection mid-pipeline: the command and the broker's words."""
    queues = tuple(Queue(vhost, f"q{i}", arguments={"x-queue-master-locator": "min-masters"}) for i in range(3))
    topology = Topology(vhosts=(VHost(vhost),), queues=queues)
    broker = provisioner.connect(retry_seconds=0)
    if not DENY_DEPRECATED:  # the broker under test permits it: it applies
        provisioner.apply_topology(topology, broker)
        assert provisioner.make_plan(topology, broker).in_sync
        return
    with pytest.raises((BrokerError, PlanProblem)) as caught:  # 4.3 knows it first: a plan problem, nothing written
        provisioner.apply_topology(topology, broker)
    said = str(caught.value)
    assert plain_words(said) and "connection lost" not in said and "queue_master_locator" in said, said


def test_patterns_validate_takes_the_broker_takes(vhost_name: str) -> None:
    """Every pattern validate accepts above, PCRE-only syntax included, applies as a policy and re-plans clean."""
    patterns = ACCEPTED_PATTERNS
    body = "".join(
        f"  p{i}: {{pattern: {json.dumps(p)}, definition: {{max-length: 1}}}}\n" for i, p in enumerate(patterns)
    )
    topology = provisioner.parse_topology(f"version: 1\nvhost: {vhost_name}\npolicies:\n{body}", environ={})
    broker = provisioner.connect(retry_seconds=0)
    provisioner.apply_topology(topology, broker)
    assert provisioner.make_plan(topology, broker).in_sync
