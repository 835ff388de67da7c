"""What the broker's version does with the objects a plan writes: reads what the rules need, then applies them.

The rules are pure (version_rules.py); this room decides what to read, and reads
it only when the plan writes something a rule asks about: each queue or policy
change gets the verdict beside it ("RabbitMQ 4.3.6 refuses x-queue-version 1"),
and what the broker would refuse becomes a plan problem.
"""

from __future__ import annotations

from collections.abc import Mapping

import provisioner.version_rules as rules
from provisioner.broker.management import Management, ManagementError
from provisioner.kinds.runtime_parameters import FEDERATION_UPSTREAM
from provisioner.live_state import LiveVhost
from provisioner.parameters.as_policies import as_policies
from provisioner.parameters.broker import plugin_off
from provisioner.plan import Plan
from provisioner.topology import readiness
from provisioner.topology.model import Topology
from provisioner.topology.verdicts import Verdict, denied_features, parse_version


def read_denied(management: Management) -> dict[str, bool | None] | None:
    """Which deprecated features the broker denies; None on a broker that cannot say (3.x: no such endpoint)."""
    try:
        rows = management.deprecated_features()
    except ManagementError:
        return None
    return None if rows is None else denied_features(rows)


def verdicts(
    desired: Topology, version: str, management: Management | None, exempt: set[tuple[str, ...]] | None = None
) -> list[Verdict]:
    """The verdict of RabbitMQ ``version`` on each readiness finding in the topology (rules that speak only)."""
    if parse_version(version) is None:
        return []
    operator_policies = as_policies(desired.accounts.parameters)
    found = [*readiness.findings(desired, exempt=exempt), *readiness.policy_findings(operator_policies)]
    denied = read_denied(management) if rules.needs_denied(found) and management is not None else None
    return rules.verdicts_of(found, version, denied)


def with_version_notes(plan: Plan, desired: Topology, live: Mapping[str, LiveVhost], management: Management) -> Plan:
    """The plan with each written object's verdicts in its reason, and the broker's refusals as problems."""
    if not rules.writes(plan):
        return plan  # a no-op plan costs nothing more
    version = rules.broker_version(live)
    internal = rules.internal_exchanges_to_find(plan, live, version)  # one request per such exchange only
    present = {e.key for e in internal if rules.as_declared(e, management.exchange(e.vhost, e.name))}
    plan = rules.without_creating(plan, present)
    topics = rules.topic_exchanges_to_find(plan, desired, version)
    missing = [topic for topic in topics if management.exchange(topic.vhost, topic.exchange) is None]
    plan = rules.with_protected_users(rules.with_missing_topic_exchanges(plan, missing, version), version)
    plan = rules.with_settings_too_new(plan, desired, version)
    other_types = rules.exchanges_of_other_types(plan)
    if other_types:  # GET /api/overview only for an exchange type not built in
        plan = rules.with_exchange_types(plan, other_types, management.overview().get("exchange_types"))
    grants = rules.grants_of_undefined_users(plan, desired)
    if grants:  # GET /api/users only for a permission of a user the topology does not define
        existing = {str(row.get("name")) for row in management.listing("users") if isinstance(row, dict)}
        plan = rules.with_permission_users(plan, grants, existing)
    federated = rules.federation_policies(plan)
    if federated and plugin_off(management, FEDERATION_UPSTREAM.name):  # GET /api/extensions only for such a policy
        plan = rules.with_federation_off(plan, federated)
    return rules.with_verdicts(plan, verdicts(desired, version, management))
