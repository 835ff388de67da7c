"""The rule behind --force for limits, over structured changes and counts: limits.limit_changes and limits.losses.

Pure: a desired topology and a live state in, the plan's limit changes and the
losses they would cause for given counts out. Each family, in place (a policy,
an operator policy) and by replacement (a queue's argument).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.diff import differences
from provisioner.errors import UnsafeChange
from provisioner.limits import limit_changes, losses
from provisioner.live_state import LiveVhost
from provisioner.options import ApplyOptions
from provisioner.output import plan_lines
from provisioner.plan import Held, Loss, Plan
from provisioner.safety import refuse_unsafe
from provisioner.topology.model import OperatorPolicy, Policy, Queue, Topology, VHost

V = "v"


def plan_of(
    live_queues: list[Queue],
    live_policies: list[Policy],
    queues: list[Queue] | None = None,
    policies: list[Policy] | None = None,
    version: str = "3.10.8",
) -> Plan:
    """Plan from the live state to the desired one, with its limit changes (no counts yet)."""
    desired = Topology(vhosts=(VHost(V),), queues=tuple(queues or live_queues), policies=tuple(policies or ()))
    live_topology = Topology(vhosts=(VHost(V),), queues=tuple(live_queues), policies=tuple(live_policies))
    live = {V: LiveVhost(V, True, live_topology, version=version)}
    plan = differences(desired, live, prune=True)
    return Plan(plan.changes, limits=limit_changes(plan, live, version))


def held(queue: str, ready: int, unacked: int = 0, kind: str = "classic", size: int | None = None) -> Held:
    return Held(V, queue, kind, ready, unacked, 1 if unacked else 0, size)


def lost(plan: Plan, *counts: Held) -> list[Loss]:
    return list(losses(plan.limits, {(h.vhost, h.queue): h for h in counts}))


def policy(definition: dict, name: str = "p", pattern: str = "^q$", priority: int = 0) -> Policy:
    return Policy(V, name, pattern, definition, "queues", priority)


Q = Queue(V, "q")


@pytest.mark.parametrize(
    ("before", "after", "count", "key", "words"),
    [
        ({"max-length": 100}, {"max-length": 10}, held("q", 40, 10), "max-length", "drops the oldest 40"),
        ({}, {"max-length-bytes": 1000}, held("q", 3, size=5000), "max-length-bytes", "until 1000 of their 5000"),
        ({}, {"max-length-bytes": 1000}, held("q", 3), "max-length-bytes", "size is unknown"),
        ({}, {"message-ttl": 60000}, held("q", 0, 2), "message-ttl", "older than 60000 ms"),
        ({"message-ttl": 90000}, {"message-ttl": 60000}, held("q", 1), "message-ttl", "older than 60000 ms"),
        ({}, {"expires": 5000}, held("q", 1), "expires", "unused for 5000 ms"),
        (
            {"max-length": 5, "overflow": "reject-publish"},
            {"max-length": 5, "overflow": "drop-head"},
            held("q", 5, 3),
            "overflow",
            "drops the oldest 3",
        ),
    ],
    ids=["length", "bytes", "bytes-unknown", "ttl-unacked", "ttl-lowered", "expires", "overflow"],
)
def test_a_policy_changed_in_place_that_drops_or_expires_is_a_loss(before, after, count, key, words) -> None:
    plan = plan_of([Q], [policy(before)] if before else [], policies=[policy(after)])
    found = [loss for loss in lost(plan, count) if loss.limit.key == key]
    assert len(found) == 1, lost(plan, count)
    assert words in found[0].what
    line = found[0].text()
    assert "'q'" in line and f"{count.messages} messages" in line and f"policy 'p' sets {key}" in line
    with pytest.raises(UnsafeChange) as refused:
        refuse_unsafe(Plan(plan.changes, limits=plan.limits, losses=tuple(found)), ApplyOptions())
    assert line in str(refused.value)
    refuse_unsafe(Plan(plan.changes, limits=plan.limits, losses=tuple(found)), ApplyOptions(force=True))


@pytest.mark.parametrize(
    ("before", "after", "count"),
    [
        ({"max-length": 10}, {"max-length": 100}, held("q", 50)),  # raised
        ({"max-length": 100}, {"max-length": 10}, held("q", 10)),  # lowered, still fits
        ({}, {"max-length": 10, "overflow": "reject-publish"}, held("q", 50)),  # refuses new ones, keeps these
        ({}, {"message-ttl": 1000}, held("q", 0)),  # nothing held
        ({"message-ttl": 1000}, {"message-ttl": 5000}, held("q", 9)),  # longer
        ({}, {"max-length-bytes": 1000}, held("q", 3, size=900)),  # fits
        ({"expires": 1000}, {}, held("q", 9)),  # removed
    ],
    ids=["raised", "fits", "reject-publish", "empty", "longer-ttl", "bytes-fit", "removed"],
)
def test_a_limit_that_loses_nothing_is_no_loss(before, after, count) -> None:
    plan = plan_of([Q], [policy(before)] if before else [], policies=[policy(after)] if after else [])
    assert lost(plan, count) == []


def test_an_operator_policy_is_named_as_the_source() -> None:
    live = [OperatorPolicy(V, "op", ".*", {"max-length": 1000}, "queues", 0)]
    plan = plan_of([Q], live, policies=[OperatorPolicy(V, "op", ".*", {"max-length": 3}, "queues", 0)])
    (loss,) = lost(plan, held("q", 7))
    assert loss.limit.source == "operator policy 'op'" and loss.limit.by == ("operator_policy", V, "op")
    assert "drops the oldest 4" in loss.what


def test_deleting_a_policy_that_uncovers_a_stricter_one_is_a_loss() -> None:
    strict, loose = policy({"max-length": 2}, "strict", "^q", 0), policy({"max-length": 500}, "loose", "^q$", 10)
    plan = plan_of([Q], [strict, loose], policies=[strict])
    (loss,) = lost(plan, held("q", 10))
    assert loss.limit.source == "policy 'strict'" and loss.limit.before == 500 and loss.limit.after == 2


def test_an_unmanaged_queue_a_policy_reaches_counts_too() -> None:
    other = Queue(V, "q-unmanaged")
    plan = plan_of([Q, other], [], queues=[Q], policies=[policy({"message-ttl": 10}, pattern="^q")])
    assert {loss.limit.queue for loss in lost(plan, held("q", 1), held("q-unmanaged", 1))} == {"q", "q-unmanaged"}


@pytest.mark.parametrize(
    ("argument", "value", "key"),
    [
        ("x-max-length", 3, "max-length"),
        ("x-max-length-bytes", 10, "max-length-bytes"),
        ("x-message-ttl", 5, "message-ttl"),
        ("x-expires", 5000, "expires"),
    ],
)
def test_a_replacement_that_sets_an_argument_is_a_loss_named_by_its_argument(argument, value, key) -> None:
    plan = plan_of([Q], [], queues=[Queue(V, "q", arguments={argument: value})])
    (loss,) = lost(plan, held("q", 8, 2, size=100))
    assert loss.limit.source == f"argument {argument}" and loss.limit.key == key
    assert loss.limit.by == ("queue", V, "q")


def test_a_quorum_delivery_limit_counts_from_the_default_of_the_version() -> None:
    quorum = Queue(V, "q", "quorum")
    lowered = [policy({"delivery-limit": 5})]
    (loss,) = lost(plan_of([quorum], [], policies=lowered, version="3.10.8"), held("q", 1, kind="quorum"))
    assert loss.limit.before is None and loss.limit.after == 5
    assert lost(plan_of([quorum], [], policies=lowered, version="4.0.5"), held("q", 1, kind="quorum"))
    raised = [policy({"delivery-limit": 50})]
    assert not lost(plan_of([quorum], [], policies=raised, version="4.0.5"), held("q", 1, kind="quorum"))


def test_a_migration_to_a_quorum_queue_resets_delivery_counts_so_its_default_limit_loses_nothing() -> None:
    plan = plan_of([Q], [], queues=[Queue(V, "q", "quorum")], version="4.0.5")
    assert [limit.key for limit in plan.limits] == ["delivery-limit"]  # none before, the broker's 20 after
    assert lost(plan, held("q", 30, 5)) == []


def test_a_replacement_lowering_a_quorum_queues_delivery_limit_is_a_loss() -> None:
    before = Queue(V, "q", "quorum", arguments={"x-delivery-limit": 10})
    plan = plan_of([before], [], queues=[Queue(V, "q", "quorum", arguments={"x-delivery-limit": 3})])
    (loss,) = lost(plan, held("q", 4, kind="quorum"))
    assert loss.limit.source == "argument x-delivery-limit" and (loss.limit.before, loss.limit.after) == (10, 3)


def test_a_stream_retention_shortened_is_a_loss_even_when_its_count_is_not_settled() -> None:
    stream = Queue(V, "q", "stream")
    plan = plan_of([stream], [policy({"max-age": "7D"})], policies=[policy({"max-age": "1h"})])
    unsettled = Held(V, "q", "stream", 1, 0, 0, None, sure=False)
    (loss,) = lost(plan, unsettled)
    assert "older than 1h" in loss.what and "at least 1 messages" in loss.text()


@given(
    before=st.one_of(st.none(), st.integers(0, 50)),
    after=st.integers(0, 50),
    ready=st.integers(0, 60),
    unacked=st.integers(0, 10),
)
def test_a_length_limit_loses_exactly_when_the_queue_holds_more_than_it_keeps(before, after, ready, unacked) -> None:
    live = [policy({"max-length": before})] if before is not None else []
    plan = plan_of([Q], live, policies=[policy({"max-length": after})])
    found = lost(plan, held("q", ready, unacked))
    tighter = before is None or after < before
    assert bool(found) == (tighter and ready + unacked > after)
    if found:
        assert found[0].what.startswith(f"drops the oldest {ready + unacked - after} ")


def test_removing_a_dead_letter_exchange_is_a_loss_in_place_and_by_replacement() -> None:
    in_place = plan_of([Q], [policy({"dead-letter-exchange": "dlx"})], policies=[policy({"max-length": 100})])
    (loss,) = [loss for loss in lost(in_place, held("q", 2)) if loss.limit.key == "dead-letter-exchange"]
    assert "instead of dead-lettering it to 'dlx'" in loss.what
    with_argument = Queue(V, "q", arguments={"x-dead-letter-exchange": "dlx"})
    replaced = plan_of([with_argument], [], queues=[Q])
    (loss,) = lost(replaced, held("q", 2))
    assert loss.limit.source == "nothing" and loss.limit.by == ("queue", V, "q")


def test_a_policy_change_of_any_key_shows_the_counts_of_the_queues_it_reaches_without_a_loss() -> None:
    plan = plan_of([Q], [policy({"queue-mode": "default"})], policies=[policy({"queue-mode": "lazy"})])
    (limit,) = plan.limits
    assert (limit.key, limit.before, limit.after, limit.by) == ("queue-mode", "default", "lazy", ("policy", V, "p"))
    count = held("q", 7, 1)
    assert lost(plan, count) == []
    text = plan_lines(Plan(plan.changes, limits=plan.limits, held=(count,)))
    assert (
        "        queue q: queue-mode default -> lazy (policy 'p'); holds 8 messages (7 ready, 1 unacked), 1 consumers"
        in [line for line, _ in text]
    )
