"""The pure diff on recorded broker answers (tests/diff_cases.py), and its promise of byte-identical plans."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from diff_cases import CASES, load_document, plan_for, plan_json, plan_of, plan_text, recorded, topology_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.plan import Action

ROOT = Path(__file__).resolve().parent.parent.parent
IDS = [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_plan_text_matches_the_recorded_expectation(case: Path) -> None:
    assert plan_text(plan_for(case)) == (case / "plan.txt").read_text()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_plan_json_matches_the_recorded_expectation(case: Path) -> None:
    assert plan_json(plan_for(case)) == (case / "plan.json").read_text()


def _shuffled_mappings(value: Any, rng: random.Random) -> Any:
    """The same document with every mapping's keys in another order (lists keep theirs: order means something)."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: _shuffled_mappings(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [_shuffled_mappings(item, rng) for item in value]
    return value


def _shuffled_lists(answers: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The broker's answers with every list of objects (and each object's keys) in another order."""
    definitions = {
        kind: rng.sample(items, len(items)) if isinstance(items, list) else items
        for kind, items in answers["definitions"].items()
    }
    shuffled = {
        "definitions": _shuffled_mappings(definitions, rng),
        "queues": rng.sample(answers["queues"], len(answers["queues"])),
    }
    if "operator_policies" in answers:
        shuffled["operator_policies"] = rng.sample(answers["operator_policies"], len(answers["operator_policies"]))
    return shuffled


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES), rng=st.randoms(use_true_random=False))
def test_shuffled_inputs_give_a_byte_identical_plan(case: Path, rng: random.Random) -> None:
    """Mapping order in the topology and list order in the broker's answers never show in the plan."""
    with tempfile.TemporaryDirectory() as folder:
        desired = load_document(_shuffled_mappings(topology_document(case), rng), Path(folder))
    plan = plan_of(desired, _shuffled_lists(recorded(case), rng), prune=False)
    assert plan_text(plan) == (case / "plan.txt").read_text()
    assert plan_json(plan) == (case / "plan.json").read_text()


PRINT_PLANS = """
import sys
sys.path.insert(0, "tests")
from diff_cases import CASES, plan_for, plan_json, plan_text
for case in CASES:
    plan = plan_for(case)
    sys.stdout.write(plan_text(plan) + plan_json(plan))
"""


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_another_hash_seed_gives_a_byte_identical_plan(seed: str) -> None:
    """Set and dict order that hangs on string hashing would differ between processes with other seeds."""
    environment = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", PRINT_PLANS], capture_output=True, text=True, cwd=ROOT, env=environment, check=True
    )
    here = "".join(plan_text(plan) + plan_json(plan) for plan in (plan_for(case) for case in CASES))
    assert result.stdout == here


def test_the_shop_drift_case_finds_exactly_what_was_done_by_hand() -> None:
    plan = plan_for(CASES[IDS.index("shop-drift")], prune=True)
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
