"""The meaning checks over many vhosts: the same findings, in the same order, since they went linear (issue 13).

The expected findings were computed by the checks as they were before (one pass
over every queue and binding per vhost) and are written here as literals; the
policy lookup's shortcuts are compared with the broker's rule written out plainly.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.topology import checks
from provisioner.topology.documents import read_document
from provisioner.topology.expand import expand_documents
from provisioner.topology.model import Exchange, OperatorPolicy, Policy, Queue, VHost
from provisioner.topology.policies import APPLIES_TO, PolicySet, effective
from provisioner.topology.schema import wants_text
from provisioner.topology.variables import interpolate


def queue_line(index: int, cycle: bool) -> str:
    name = f"q{index:02d}"
    return {
        0: f"{name}: {{type: quorum, bindings: [{{exchange: work, routing_key: jobs.{index}}}]}}",
        1: f"{name}: {{type: quorum, bindings: [{{exchange: work, routing_key: jobs.{index}}}], dead_letter: true}}",
        2: f"{name}: {{bindings: [{{exchange: work, routing_key: jobs.{index}}}], dead_letter: {{via: policy}}}}",
        3: (
            f"{name}: {{arguments: {{x-dead-letter-exchange: '', x-dead-letter-routing-key: q05}}, "
            "bindings: [{exchange: fan}]}"
            if cycle
            else f"{name}: {{queue_mode: lazy, durable: false, bindings: [{{exchange: fan}}]}}"
        ),
        4: f"{name}: {{type: quorum, policy: {{delivery-limit: 5}}}}",
        5: f"{name}: {{type: quorum, arguments: {{x-dead-letter-exchange: fan}}, bindings: [{{exchange: fan}}]}}",
    }[index % 6]


def many_vhosts(vhosts: int, queues: int) -> str:
    """``vhosts`` vhosts of ``queues`` queues each; every third vhost has policies, every other one a cycle."""
    lines = ["version: 1", "vhosts:"]
    for vhost in range(vhosts):
        lines += [f"  v{vhost}:", "    exchanges:", "      work: {type: topic}", "      fan: {type: fanout}"]
        lines += ["    queues:", *(f"      {queue_line(i, vhost % 2 == 1)}" for i in range(queues))]
        if vhost % 3 == 0:
            lines += [
                "    policies:",
                "      ttl: {pattern: '^q1', definition: {message-ttl: 60000, dead-letter-exchange: fan}}",
                "      mirror: {pattern: 'q0.$', priority: 3, definition: {ha-mode: all}}",
                "    operator_policies:",
                "      cap: {pattern: '.*', apply_to: quorum_queues, definition: {delivery-limit: 50}}",
            ]
    return "\n".join(lines) + "\n"


# (line, column, severity, path, message start) of each finding, in order; the digest covers the whole messages.
EXPECTED = [
    (21, 22, "e", "vhosts.v0.policies.ttl.pattern", "policy also matches queue 'q10"),
    (22, 25, "e", "vhosts.v0.policies.mirror.pattern", "policy also matches queue 'q02"),
    (22, 25, "e", "vhosts.v0.policies.mirror.pattern", "policy also matches queue 'q04"),
    (22, 25, "e", "vhosts.v0.policies.mirror.pattern", "policy also matches queue 'q08"),
    (77, 22, "e", "vhosts.v3.policies.ttl.pattern", "policy also matches queue 'q10"),
    (78, 25, "e", "vhosts.v3.policies.mirror.pattern", "policy also matches queue 'q02"),
    (78, 25, "e", "vhosts.v3.policies.mirror.pattern", "policy also matches queue 'q04"),
    (78, 25, "e", "vhosts.v3.policies.mirror.pattern", "policy also matches queue 'q08"),
    (13, 7, "e", "vhosts.v0.queues.q05", "dead-letter cycle: q05 -> q05"),
    (19, 7, "e", "vhosts.v0.queues.q11", "dead-letter cycle: q11 -> q11"),
    (33, 7, "e", "vhosts.v1.queues.q03", "dead-letter cycle: q03 -> q05 "),
    (41, 7, "e", "vhosts.v1.queues.q11", "dead-letter cycle: q11 -> q11"),
    (52, 7, "e", "vhosts.v2.queues.q05", "dead-letter cycle: q05 -> q05"),
    (58, 7, "e", "vhosts.v2.queues.q11", "dead-letter cycle: q11 -> q11"),
    (67, 7, "e", "vhosts.v3.queues.q03", "dead-letter cycle: q03 -> q05 "),
    (75, 7, "e", "vhosts.v3.queues.q11", "dead-letter cycle: q11 -> q11"),
    (22, 68, "w", "vhosts.v0.policies.mirror.definition.ha-mode", "ha-mode: classic queue mirrori"),
    (78, 68, "w", "vhosts.v3.policies.mirror.definition.ha-mode", "ha-mode: classic queue mirrori"),
    (11, 25, "w", "vhosts.v0.queues.q03.queue_mode", "x-queue-mode lazy: lazy mode h"),
    (11, 40, "w", "vhosts.v0.queues.q03.durable", "a non-durable queue: RabbitMQ "),
    (17, 25, "w", "vhosts.v0.queues.q09.queue_mode", "x-queue-mode lazy: lazy mode h"),
    (17, 40, "w", "vhosts.v0.queues.q09.durable", "a non-durable queue: RabbitMQ "),
    (50, 25, "w", "vhosts.v2.queues.q03.queue_mode", "x-queue-mode lazy: lazy mode h"),
    (50, 40, "w", "vhosts.v2.queues.q03.durable", "a non-durable queue: RabbitMQ "),
    (56, 25, "w", "vhosts.v2.queues.q09.queue_mode", "x-queue-mode lazy: lazy mode h"),
    (56, 40, "w", "vhosts.v2.queues.q09.durable", "a non-durable queue: RabbitMQ "),
    (8, 7, "w", "vhosts.v0.queues.q00", "quorum queue without delivery_"),
    (12, 7, "w", "vhosts.v0.queues.q04", "quorum queue without delivery_"),
    (14, 7, "w", "vhosts.v0.queues.q06", "quorum queue without delivery_"),
    (30, 7, "w", "vhosts.v1.queues.q00", "quorum queue without delivery_"),
    (36, 7, "w", "vhosts.v1.queues.q06", "quorum queue without delivery_"),
    (47, 7, "w", "vhosts.v2.queues.q00", "quorum queue without delivery_"),
    (53, 7, "w", "vhosts.v2.queues.q06", "quorum queue without delivery_"),
    (64, 7, "w", "vhosts.v3.queues.q00", "quorum queue without delivery_"),
    (68, 7, "w", "vhosts.v3.queues.q04", "quorum queue without delivery_"),
    (70, 7, "w", "vhosts.v3.queues.q06", "quorum queue without delivery_"),
]
EXPECTED_DIGEST = "ef66956206b80eccf701937c8a0163f37e70fed717f26611d70600e4420ae387"


def test_many_vhosts_give_the_findings_the_quadratic_checks_gave(tmp_path: Path) -> None:
    """Policies in some vhosts only, shadowed own policies, dead-letter cycles, delivery-limit warnings."""
    path = tmp_path / "topology.yaml"
    path.write_text(many_vhosts(4, 12))
    document = read_document(path)
    interpolate(document, {}, wants_text)
    topology, origins, problems = expand_documents([document])
    assert problems == []
    found = checks.meaning_problems(topology, origins)
    assert [(p.line, p.column, p.severity[0], p.path, p.message[:30]) for p in found] == EXPECTED
    full = "\n".join(f"{p.line}:{p.column} {p.severity} {p.path} {p.message}" for p in found)
    assert hashlib.sha256(full.encode()).hexdigest() == EXPECTED_DIGEST


def _broker_rule(policies: list[Policy], target: str, name: str) -> Policy | None:
    """The broker's rule with no index and no shortcut: every policy tried, the highest priority wins."""
    found = [p for p in policies if target in APPLIES_TO[p.apply_to] and PolicySet([p]).winner(target, name)]
    return min(found, key=lambda p: (-p.priority, p.name)) if found else None


_NAMES = st.sampled_from(["a", "ab", "b", "a.b", "a+b"])
_PATTERNS = st.one_of(st.builds(lambda n: f"^{n}$", _NAMES), st.sampled_from(["^a", "b$", ".*", "a.b"]))
_POLICIES = st.lists(
    st.builds(
        lambda name, pattern, apply_to, priority, limit, operator: (OperatorPolicy if operator else Policy)(
            "v", name, pattern, {"max-length": limit}, apply_to, priority
        ),
        st.text("pqr", min_size=1, max_size=2),
        _PATTERNS,
        st.sampled_from(sorted(APPLIES_TO)),
        st.integers(0, 2),
        st.integers(1, 9),
        st.booleans(),
    ),
    max_size=5,
    unique_by=lambda p: (type(p), p.name),
)


@settings(max_examples=300, deadline=None)
@given(_POLICIES, st.sampled_from(["classic", "quorum", "exchange"]), _NAMES)
def test_the_policy_lookup_shortcuts_pick_what_the_broker_picks(policies: list[Policy], target: str, name: str) -> None:
    """Empty sets, exact names only, patterns only: the winner and the combined settings are the broker's."""
    own = [p for p in policies if not isinstance(p, OperatorPolicy)]
    operator = [p for p in policies if isinstance(p, OperatorPolicy)]
    result = effective(target, name, PolicySet(own), PolicySet(operator))
    policy, operator_policy = _broker_rule(own, target, name), _broker_rule(operator, target, name)
    assert (result.policy, result.operator_policy) == (
        policy.name if policy else None,
        operator_policy.name if operator_policy else None,
    )
    limits = [p.definition["max-length"] for p in (policy, operator_policy) if p is not None]
    assert result.definition == ({"max-length": min(limits)} if limits else {})


def test_the_quick_name_test_rests_on_what_printable_means() -> None:
    """Over every code point: a printable character is no control character, and ' ' is its only white space."""
    for code in range(sys.maxunicode + 1):
        character = chr(code)
        if character.isprintable():
            assert checks.plain_name(f"q{character}q"), hex(code)
            assert character.strip() == character or character == " ", hex(code)


def test_the_quick_name_test_passes_no_name_the_full_test_reports() -> None:
    """Each problem the full test finds, at the edges the quick test draws."""
    reported = [" q", "q ", "q\t", "\xa0q", "q\u2028", "amq.q", "q.provisioner-migrate", "provisioner.lock"]
    reported += ["\x85", "\ud800", "é" * 128, "q" * 256]
    for name in reported:
        assert not checks._surely_fine_name(Queue("v", name)), repr(name)
    for name in ["q", "q q", "é" * 127, "q" * 255, "amq", "provisioner.locks", "日本"]:
        assert checks._surely_fine_name(Queue("v", name)), repr(name)
    assert checks._surely_fine_name(Exchange("v", "x.provisioner-probe", "direct"))
    assert checks._surely_fine_name(VHost("amq.v"))
    assert not checks._surely_fine_name(VHost("v" * 256))
