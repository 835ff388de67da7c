"""Pure: what one RabbitMQ version does with what the readiness rules find: refuses it, ignores it, or takes it.

The rules (topology/readiness.py) say from which version a setting is refused or
ignored; here a finding meets the broker's version and, for deprecated features,
whether the broker denies them (GET /api/deprecated-features: 4.3 says per
feature, 4.0 only the default phase). Plan shows the verdict beside each object
and refuses to apply what the broker would refuse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.kinds.policy import POLICY
from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.topology.readiness import REQUEUE, Finding, Outcome, Version

# Deprecation phases in which a feature is denied unless rabbitmq.conf permits it.
DENIED_PHASES = frozenset({"denied_by_default", "disconnected", "removed"})


def parse_version(text: str) -> Version | None:
    """``"4.3.6"`` -> (4, 3); None when the text is no version."""
    parts = text.split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1])


def denied_features(rows: Iterable[Mapping[str, Any]]) -> dict[str, bool | None]:
    """GET /api/deprecated-features -> feature: denied (True), permitted (False), unknown (None: 4.0 has no state)."""
    found: dict[str, bool | None] = {}
    for row in rows:
        state, phase = row.get("state"), row.get("deprecation_phase")
        if state in ("denied", "permitted"):
            found[str(row["name"])] = state == "denied"
        else:
            found[str(row["name"])] = True if phase in DENIED_PHASES else None
    return found


@dataclass(frozen=True)
class Verdict:
    """What the broker does with one finding: ``effect`` refuses, ignores, may-refuse, changes, or takes."""

    finding: Finding
    effect: str
    text: str  # "RabbitMQ 4.3.6 refuses x-queue-version 1"

    @property
    def refused(self) -> bool:
        return self.effect == "refuses"


def place(finding: Finding) -> str:
    """Where the finding's setting is written: a queue argument, a policy, an operator policy, or the queue."""
    kind = finding.key[0]
    if kind == POLICY.name:
        return "policy"
    if kind == OPERATOR_POLICY.name:
        return "operator policy"
    return "argument" if finding.setting.startswith("x-") else "queue"


def verdict(finding: Finding, version_text: str, denied: Mapping[str, bool | None] | None = None) -> Verdict | None:
    """What RabbitMQ ``version_text`` does with the finding's setting; None when the version or rule says nothing."""
    version = parse_version(version_text)
    rule = finding.rule
    if version is None or rule is None:
        return None
    what = _setting_text(finding)
    if rule is REQUEUE:
        if version < (4, 3):
            return None  # requeues still count: nothing changes on this broker
        return Verdict(finding, "changes", f"RabbitMQ {version_text} no longer counts requeues against its limit")
    outcome = _outcome(rule.outcomes, place(finding), version)
    if outcome is None:
        return Verdict(finding, "takes", f"RabbitMQ {version_text} takes {what}")
    if not outcome.feature:
        return Verdict(finding, outcome.effect, f"RabbitMQ {version_text} {outcome.effect} {what}")
    state = (denied or {}).get(outcome.feature)
    if state is None:
        text = f"RabbitMQ {version_text} would refuse {what} if deprecated feature {outcome.feature} is denied"
        return Verdict(finding, "may-refuse", text)
    if state:
        return Verdict(finding, "refuses", f"RabbitMQ {version_text} refuses {what} ({outcome.feature} is denied)")
    return Verdict(finding, "takes", f"RabbitMQ {version_text} takes {what} ({outcome.feature} is permitted there)")


def _outcome(outcomes: tuple[Outcome, ...], where: str, version: Version) -> Outcome | None:
    for outcome in outcomes:  # latest first
        if where in outcome.places and version >= outcome.since:
            return outcome
    return None


def _setting_text(finding: Finding) -> str:
    if finding.setting == "durable":
        return "a non-durable queue"
    if not finding.setting:
        return "it"
    value = str(finding.value).lower() if isinstance(finding.value, bool) else finding.value
    return f"{finding.setting} {value}"
