"""The version rules are pure: a plan and what was read in, the plan with its problems out (version_notes reads)."""

from __future__ import annotations

from provisioner import version_rules as rules
from provisioner.live_state import LiveVhost
from provisioner.plan import Action, Change, Plan
from provisioner.topology.accounts import Accounts, Permission, TopicPermission, User
from provisioner.topology.model import Exchange, Policy, Topology, VHost

V = "v"
INTERNAL = Exchange(V, "int", type="topic", internal=True)
ODD = Exchange(V, "odd", type="x-consistent-hash")
ORDERS = Exchange(V, "orders", type="topic")
DESIRED = Topology(
    vhosts=(VHost(V),),
    exchanges=(INTERNAL, ODD, ORDERS),
    accounts=Accounts(users=(User("alice"),)),
)


def created(*resources: object) -> Plan:
    return Plan(changes=tuple(Change(Action.CREATE, None, resource) for resource in resources))  # type: ignore[arg-type]


def test_what_to_read_is_asked_only_of_the_writes_that_need_it() -> None:
    plan = created(INTERNAL, ODD, ORDERS, TopicPermission(V, "alice", "ghost", ".*", ".*"))
    live = {V: LiveVhost(V, True, version="4.3.6")}
    assert rules.internal_exchanges_to_find(plan, live, "4.3.6") == [INTERNAL]
    assert rules.internal_exchanges_to_find(plan, live, "4.0.5") == []
    assert rules.exchanges_of_other_types(plan) == [ODD]
    assert [t.exchange for t in rules.topic_exchanges_to_find(plan, DESIRED, "4.3.6")] == ["ghost"]
    assert rules.topic_exchanges_to_find(plan, DESIRED, "3.13.7") == []
    assert rules.grants_of_undefined_users(created(Permission(V, "alice", "", "", "")), DESIRED) == []


def test_an_exchange_already_on_the_broker_as_declared_is_not_created() -> None:
    row = {"name": "int", "type": "topic", "durable": True, "auto_delete": False, "internal": True, "arguments": {}}
    assert rules.as_declared(INTERNAL, row) and not rules.as_declared(INTERNAL, {**row, "type": "direct"})
    assert rules.without_creating(created(INTERNAL, ORDERS), {INTERNAL.key}).changes == created(ORDERS).changes


def test_what_the_broker_refuses_becomes_a_problem() -> None:
    plan = created(ODD, Policy(V, "fed", "^x", {"federation-upstream": "up"}))
    typed = rules.with_exchange_types(plan, [ODD], [{"name": "direct"}])
    assert "no exchange type 'x-consistent-hash' (enabled: direct)" in typed.problems[0]
    assert rules.with_exchange_types(plan, [ODD], None) == plan  # a broker that does not say: apply finds out
    off = rules.with_federation_off(plan, rules.federation_policies(plan))
    assert off.problems[0].startswith("policy 'fed' in vhost 'v': federation-upstream needs the federation plugin")
    protected = Plan(changes=(Change(Action.DELETE, User("carol", tags=("protected",)), None),))
    assert rules.with_protected_users(protected, "4.3.6").problems
    assert rules.with_protected_users(protected, "4.2.0") == protected
