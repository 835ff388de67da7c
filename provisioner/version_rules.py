"""Pure: what the broker's version and what was read of it do to the objects a plan writes. No I/O here.

Each rule takes the plan and what orchestration read for it (version_notes.py
reads, only when a rule's ``wanted`` says the plan needs it) and returns the plan
with a problem or a note added; a refusal becomes a plan problem, so apply
refuses before writing anything instead of failing half-way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from provisioner.kinds.accounts import USER
from provisioner.kinds.exchange import EXCHANGE
from provisioner.live_state import LiveVhost
from provisioner.plan import Action, Change, Plan
from provisioner.topology import readiness
from provisioner.topology.accounts import Permission, TopicPermission
from provisioner.topology.introduced import too_new
from provisioner.topology.model import Exchange, Key, Policy, Topology
from provisioner.topology.verdicts import Verdict, parse_version, verdict

T = TypeVar("T")

WRITTEN = (Action.CREATE, Action.REPLACE, Action.UPDATE)

BUILT_IN_EXCHANGE_TYPES = frozenset({"direct", "fanout", "topic", "headers"})
# The plugin that brings each exchange type RabbitMQ's own plugins add (for the problem's hint).
EXCHANGE_TYPE_PLUGINS = {
    "x-consistent-hash": "rabbitmq_consistent_hash_exchange",
    "x-delayed-message": "rabbitmq_delayed_message_exchange",
    "x-random": "rabbitmq_random_exchange",
    "x-recent-history": "rabbitmq_recent_history_exchange",
    "x-jms-topic": "rabbitmq_jms_topic_exchange",
    "x-modulus-hash": "rabbitmq_sharding",
    "x-local-random": "(built in from RabbitMQ 4.0)",
}
FEDERATION_POLICY_KEYS = ("federation-upstream", "federation-upstream-set")


def broker_version(live: Mapping[str, LiveVhost]) -> str:
    """The broker's RabbitMQ version as the vhosts' definitions gave it ("" when unknown)."""
    return next((state.version for state in live.values() if state.version), "")


def writes(plan: Plan) -> bool:
    """Whether the plan writes anything (a no-op plan needs no rule and no read)."""
    return any(change.action in WRITTEN for change in plan.changes)


def needs_denied(found: list[readiness.Finding]) -> bool:
    """Whether a finding's verdict depends on a deprecated feature being denied (worth one request)."""
    return any(o.feature for f in found if f.rule is not None for o in f.rule.outcomes)


def verdicts_of(
    found: Iterable[readiness.Finding], version: str, denied: dict[str, bool | None] | None
) -> list[Verdict]:
    """The verdicts of RabbitMQ ``version`` that speak (a setting it takes as written says nothing)."""
    said = (verdict(finding, version, denied) for finding in found)
    return [v for v in said if v is not None and v.effect != "takes"]


def with_verdicts(plan: Plan, found: list[Verdict]) -> Plan:
    """The plan with each written object's verdicts in its reason, and the broker's refusals as problems."""
    if not found:
        return plan
    by_key: dict[tuple[str, ...], list[Verdict]] = {}
    for item in found:
        by_key.setdefault(item.finding.key, []).append(item)
    written = {change.key for change in plan.changes if change.action in WRITTEN}
    problems = [
        f"{_label(item)}: {item.text}, apply would fail ({item.finding.why})"
        for item in found
        if item.refused and item.finding.key in written
    ]
    changes = tuple(_noted(change, by_key.get(change.key, [])) for change in plan.changes)
    return replace(plan, changes=changes, problems=(*plan.problems, *problems))


def with_settings_too_new(plan: Plan, desired: Topology, version: str) -> Plan:
    """What an older broker does not know yet (topology/introduced.py) becomes a problem of the plan."""
    parsed = parse_version(version)
    if parsed is None:
        return plan
    written = {change.key for change in plan.changes if change.action in WRITTEN}
    problems = [
        f"{item.key[0].replace('_', ' ')} {item.key[-1]!r} in vhost {item.key[1]!r}: RabbitMQ {version} refuses "
        f"{item.what}, which came with RabbitMQ {item.since[0]}.{item.since[1]}; apply would fail"
        for item in too_new(desired, parsed)
        if item.key in written
    ]
    return _with_problems(plan, problems)


def exchanges_of_other_types(plan: Plan) -> list[Exchange]:
    """Written exchanges of a type not built in: the broker's enabled types decide (GET /api/overview)."""
    return [exchange for exchange in _written(plan, Exchange) if exchange.type not in BUILT_IN_EXCHANGE_TYPES]


def with_exchange_types(plan: Plan, wanted: list[Exchange], listed: Any) -> Plan:
    """An exchange of a type no enabled plugin brings: the broker refuses it (503), so apply would stop half-way.

    ``listed`` is the overview's ``exchange_types``; a broker that does not say leaves it to apply.
    """
    if not isinstance(listed, list):
        return plan
    enabled = {str(row.get("name")) for row in listed if isinstance(row, dict) and row.get("enabled", True)}
    problems = [
        f"exchange {exchange.name!r} in vhost {exchange.vhost!r}: the broker has no exchange type "
        f"{exchange.type!r} (enabled: {', '.join(sorted(enabled))}); "
        f"{_plugin_hint(exchange.type)}apply would fail"
        for exchange in wanted
        if exchange.type not in enabled
    ]
    return _with_problems(plan, problems)


def grants_of_undefined_users(plan: Plan, desired: Topology) -> list[Permission | TopicPermission]:
    """Written permissions of a user the topology does not define: the broker's users decide (GET /api/users)."""
    defined = {user.name for user in desired.accounts.users or ()}
    grants: list[Permission | TopicPermission] = [*_written(plan, Permission), *_written(plan, TopicPermission)]
    return [grant for grant in grants if grant.user not in defined]


def with_permission_users(plan: Plan, wanted: list[Permission | TopicPermission], existing: set[str]) -> Plan:
    """A permission for a user neither the topology nor the broker has: the broker refuses it (400), half-way."""
    problems = sorted(
        {
            f"{grant.kind.replace('_', ' ')} of user {grant.user!r} in vhost {grant.vhost!r}: no such user, neither "
            "in the topology's users: nor on the broker, and the broker refuses permissions of a missing user "
            "(define the user under users:, or create it first); apply would fail"
            for grant in wanted
            if grant.user not in existing
        }
    )
    return _with_problems(plan, problems)


def federation_policies(plan: Plan) -> list[Policy]:
    """Written policies that name federation upstreams: whether the federation plugin is on decides."""
    return [
        policy for policy in _written(plan, Policy) if any(key in policy.definition for key in FEDERATION_POLICY_KEYS)
    ]


def _written(plan: Plan, model: type[T]) -> list[T]:
    """What the plan creates, updates or replaces of one model class, in plan order."""
    return [change.after for change in plan.changes if change.action in WRITTEN and isinstance(change.after, model)]


def with_federation_off(plan: Plan, wanted: list[Policy]) -> Plan:
    """Policies naming federation upstreams while the federation plugin is off: the broker refuses their keys."""
    problems = [
        f"policy {policy.name!r} in vhost {policy.vhost!r}: "
        f"{', '.join(k for k in FEDERATION_POLICY_KEYS if k in policy.definition)} needs the federation plugin, "
        "which is off (run `rabbitmq-plugins enable rabbitmq_federation rabbitmq_federation_management` on every "
        "node); apply would fail"
        for policy in wanted
    ]
    return _with_problems(plan, problems)


def topic_exchanges_to_find(plan: Plan, desired: Topology, version: str) -> list[TopicPermission]:
    """From RabbitMQ 4.3, written topic permissions on an exchange the topology does not declare: ask the broker."""
    parsed = parse_version(version)
    if parsed is None or parsed < (4, 3):
        return []
    found = []
    for change in plan.changes:
        topic = change.resource
        if not isinstance(topic, TopicPermission) or change.action not in WRITTEN:
            continue
        vhost, exchange = topic.vhost, topic.exchange
        external = any(x.vhost == vhost and x.name == exchange for x in desired.external_exchanges)
        if not (exchange.startswith("amq.") or external or desired.exchange_type(vhost, exchange) is not None):
            found.append(topic)
    return found


def with_missing_topic_exchanges(plan: Plan, missing: list[TopicPermission], version: str) -> Plan:
    """A topic permission on an exchange found nowhere: RabbitMQ 4.3 refuses it, so apply would fail."""
    problems = [
        f"topic permission of user {topic.user!r} in vhost {topic.vhost!r}: exchange {topic.exchange!r} exists "
        f"neither in the topology nor on the broker, and RabbitMQ {version} refuses a topic permission on a missing "
        f"exchange (declare the exchange under exchanges:)"
        for topic in missing
    ]
    return _with_problems(plan, problems)


def internal_exchanges_to_find(plan: Plan, live: Mapping[str, LiveVhost], version: str) -> list[Exchange]:
    """4.3's definitions leave out an internal exchange that nothing binds: the ones the plan would create.

    (A bound one is read with the definitions: broker/management.py.) From RabbitMQ 4.1, in vhosts that exist.
    """
    parsed = parse_version(version)
    if parsed is None or parsed < (4, 1):
        return []
    return [
        exchange
        for change in plan.changes
        if change.action is Action.CREATE
        and isinstance((exchange := change.after), Exchange)
        and exchange.internal
        and live.get(exchange.vhost, LiveVhost(exchange.vhost, False)).exists
    ]


def as_declared(exchange: Exchange, row: dict[str, Any] | None) -> bool:
    """Whether the broker's row of an exchange is the exchange as the topology declares it."""
    return row is not None and EXCHANGE.read is not None and EXCHANGE.read(exchange.vhost, row) == exchange


def without_creating(plan: Plan, present: set[Key]) -> Plan:
    """The plan without the creations of exchanges the broker has already, as declared."""
    kept = tuple(
        change
        for change in plan.changes
        if not (change.action is Action.CREATE and isinstance(change.after, Exchange) and change.key in present)
    )
    return plan if len(kept) == len(plan.changes) else replace(plan, changes=kept)


def with_protected_users(plan: Plan, version: str) -> Plan:
    """From RabbitMQ 4.3 a user tagged ``protected`` cannot be changed or deleted over the HTTP API."""
    parsed = parse_version(version)
    if parsed is None or parsed < (4, 3):
        return plan
    problems = [
        f"user {change.name!r} is tagged protected: RabbitMQ {version} refuses to change or delete it over the "
        f"HTTP API (remove the tag with rabbitmqctl set_user_tags first, or leave the user out of the topology)"
        for change in plan.changes
        if change.kind == USER.name
        and change.action in (Action.UPDATE, Action.REPLACE, Action.DELETE)
        and "protected" in (getattr(change.before, "tags", ()) or ())
    ]
    return _with_problems(plan, problems)


def _with_problems(plan: Plan, problems: list[str]) -> Plan:
    return replace(plan, problems=(*plan.problems, *problems)) if problems else plan


def _plugin_hint(kind: str) -> str:
    plugin = EXCHANGE_TYPE_PLUGINS.get(kind)
    if plugin is None:
        return "a plugin brings it: enable it first; "
    if plugin.startswith("("):
        return f"it is {plugin[1:-1]}; "
    return f"enable its plugin first (rabbitmq-plugins enable {plugin}); "


def _noted(change: Change, found: list[Verdict]) -> Change:
    if change.action not in WRITTEN or not found:
        return change
    text = "; ".join(item.text for item in found)
    return replace(change, reason=f"{change.reason}; {text}" if change.reason else text)


def _label(item: Verdict) -> str:
    kind, vhost, name = item.finding.key[0], item.finding.key[1], item.finding.key[-1]
    return f"{kind.replace('_', ' ')} {name!r} in vhost {vhost!r}"
