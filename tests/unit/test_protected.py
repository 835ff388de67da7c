"""The plan leaves the broker's protected queues (RabbitMQ 4.1+) alone: pure, on hand-made plans."""

from __future__ import annotations

import pytest

from provisioner.plan import Action, Change, Plan
from provisioner.protected import may_protect, touched_queues, without_protected
from provisioner.topology.model import Binding, Queue

OWNED = Queue("v", "plugin.owned")
MINE = Queue("v", "mine")
TO_OWNED = Binding("v", "amq.direct", "plugin.owned", routing_key="k")
TO_MINE = Binding("v", "amq.direct", "mine", routing_key="k")
PLAN = Plan(
    changes=(
        Change(Action.DELETE, TO_OWNED, None),
        Change(Action.DELETE, TO_MINE, None),
        Change(Action.DELETE, OWNED, None),
        Change(Action.DELETE, MINE, None),
    )
)
PROTECTED = {("v", "plugin.owned"): "exchange 'amq.default'"}


def test_deletes_of_a_protected_queue_and_its_bindings_become_unmanaged_lines() -> None:
    plan = without_protected(PLAN, PROTECTED)
    assert [change.resource for change in plan.changes] == [TO_MINE, MINE]
    assert [item.resource for item in plan.unmanaged] == [TO_OWNED, OWNED]
    assert all("protected by exchange 'amq.default'" in item.note for item in plan.unmanaged)
    assert not plan.problems


def test_a_replacement_of_a_protected_queue_is_a_problem() -> None:
    plan = without_protected(
        Plan(changes=(Change(Action.REPLACE, OWNED, Queue("v", "plugin.owned", "quorum")),)), PROTECTED
    )
    assert plan.changes == () and len(plan.problems) == 1
    assert "'plugin.owned'" in plan.problems[0] and "cannot be replaced" in plan.problems[0]


def test_nothing_protected_leaves_the_plan_as_it_was() -> None:
    assert without_protected(PLAN, {}) is PLAN
    assert without_protected(PLAN, {("other", "plugin.owned"): "exchange 'x'"}).changes == PLAN.changes


def test_the_queues_a_plan_touches_are_read_for_protection() -> None:
    assert touched_queues(PLAN) == {"v": {"plugin.owned", "mine"}}


@pytest.mark.parametrize(
    ("version", "protects"), [("3.10.8", False), ("4.0.5", False), ("4.1.0", True), ("4.3.6", True), ("", False)]
)
def test_only_brokers_from_4_1_are_asked(version: str, protects: bool) -> None:
    assert may_protect(version) is protects
