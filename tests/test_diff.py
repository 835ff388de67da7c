"""The pure diff on recorded broker answers: fixture folders of topology.yaml, live.json, plan.txt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provisioner.diff import differences
from provisioner.live_state import live_from_definitions
from provisioner.output import plan_lines
from provisioner.plan import Action
from provisioner.topology import load

CASES = sorted(p for p in (Path(__file__).parent / "fixtures" / "diff").iterdir() if p.is_dir())


def plan_for(case: Path, prune: bool = False):
    desired = load([case / "topology.yaml"], environ={})
    recorded = json.loads((case / "live.json").read_text())
    vhost = desired.vhosts[0].name
    live = live_from_definitions(vhost, recorded["definitions"], {q["name"]: q for q in recorded["queues"]})
    return differences(desired, {vhost: live}, prune)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_text_matches_the_recorded_expectation(case: Path) -> None:
    text = "\n".join(line for line, _ in plan_lines(plan_for(case))) + "\n"
    expected = case / "plan.txt"
    if os.environ.get("PROVISION_REGENERATE_FIXTURES"):
        expected.write_text(text)
    assert text == expected.read_text()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_identical_inputs_give_a_byte_identical_plan(case: Path) -> None:
    first = json.dumps(plan_for(case, prune=True).to_json(), sort_keys=True, default=str)
    assert first == json.dumps(plan_for(case, prune=True).to_json(), sort_keys=True, default=str)


def test_the_shop_drift_case_finds_exactly_what_was_done_by_hand() -> None:
    plan = plan_for(CASES[[c.name for c in CASES].index("shop-drift")], prune=True)
    found = {(c.action, c.kind, c.name) for c in plan.changes}
    assert found == {
        (Action.CREATE, "binding", "orders -> queue:orders [order.paid]"),
        (Action.REPLACE, "queue", "notifications.sms"),
        (
            Action.CREATE,
            "binding",
            'notifications -> queue:notifications.sms [] {"channel":"sms","urgent":true,"x-match":"any"}',
        ),
        (Action.UPDATE, "policy", "provisioner.billing"),
        (Action.DELETE, "queue", "legacy"),
    }
    replaced = plan.of(Action.REPLACE)[0]
    assert replaced.reason == (
        "x-dead-letter-exchange: (none) -> notifications.dead; x-dead-letter-routing-key: (none) -> sms; "
        "x-max-length: 20000 -> 10000"
    )
    assert plan.of(Action.UPDATE)[0].reason == "delivery-limit: 3 -> 10"
    assert plan.of(Action.DELETE)[0].messages == 1
