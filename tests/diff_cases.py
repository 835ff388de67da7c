"""Recorded diff cases: tests/fixtures/diff/<case>/{topology.yaml, live.json, plan.txt, plan.json}.

``live.json`` holds what the management API answered for the case's vhost:
``definitions`` (GET /api/definitions/{vhost}), ``operator_policies`` and ``queues``
(name, type and exclusivity from GET /api/queues/{vhost}, messages and consumers counted
by passive declare). Pure: nothing here talks to a broker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from provisioner.diff import differences
from provisioner.live_state import live_from_definitions
from provisioner.output import plan_lines
from provisioner.plan import Plan
from provisioner.topology import Topology, load

FOLDER = Path(__file__).parent / "fixtures" / "diff"
CASES = sorted(p for p in FOLDER.iterdir() if p.is_dir())


def topology_document(case: Path) -> dict[str, Any]:
    return yaml.safe_load((case / "topology.yaml").read_text())


def recorded(case: Path) -> dict[str, Any]:
    return json.loads((case / "live.json").read_text())


def load_document(document: dict[str, Any], folder: Path) -> Topology:
    """A topology from a document (mappings in whatever order they come), through a file as users give it."""
    file = folder / "topology.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return load([file], environ={})


def plan_of(desired: Topology, live_answers: dict[str, Any], prune: bool) -> Plan:
    vhost = desired.vhosts[0].name
    details = {row["name"]: row for row in live_answers["queues"]}
    operator_policies = live_answers.get("operator_policies", [])
    live = live_from_definitions(vhost, live_answers["definitions"], details, desired, operator_policies)
    return differences(desired, {vhost: live}, prune)


def plan_for(case: Path, prune: bool = False) -> Plan:
    return plan_of(load([case / "topology.yaml"], environ={}), recorded(case), prune)


def plan_text(plan: Plan) -> str:
    """The plan as `provision plan` prints it (without colour)."""
    return "\n".join(line for line, _ in plan_lines(plan)) + "\n"


def plan_json(plan: Plan) -> str:
    """The plan as `provision plan --json` prints it."""
    return json.dumps(plan.to_json(), indent=2, sort_keys=True, default=str) + "\n"
