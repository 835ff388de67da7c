"""The registry of kinds is the one place a kind is added: the order and field rules derive from it; its handlers
live in provisioner/handlers/, registered from outside the registry."""

from __future__ import annotations

from provisioner import handlers
from provisioner.executor import HANDLERS
from provisioner.kinds import KINDS, PHASES, field_changes
from provisioner.plan import Action
from provisioner.topology.model import Exchange, Policy, Queue

C, U, R, D = Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE

# The order of execution. Topic permissions come after exchanges and go before them: RabbitMQ 4.3 refuses
# one on an exchange that does not exist (tests/broker/test_rabbitmq43.py shows it on the broker).
EXPECTED_PHASES = [
    (C, "vhost"), (U, "vhost"), (C, "global_parameter"), (U, "global_parameter"),
    (C, "vhost_limit"), (U, "vhost_limit"), (C, "user"), (U, "user"),
    (C, "permission"), (U, "permission"),
    (C, "exchange"), (R, "exchange"), (C, "topic_permission"), (U, "topic_permission"),
    (C, "queue"), (R, "queue"), (C, "binding"), (C, "policy"), (U, "policy"),
    (C, "operator_policy"), (U, "operator_policy"),
    (C, "federation_upstream"), (U, "federation_upstream"), (C, "shovel"), (U, "shovel"),
    (D, "shovel"), (D, "federation_upstream"),
    (D, "policy"), (D, "operator_policy"), (D, "binding"), (D, "queue"), (D, "topic_permission"),
    (D, "exchange"), (D, "permission"), (D, "vhost_limit"), (D, "user"), (D, "global_parameter"),
]  # fmt: skip


def test_the_order_of_execution_is_unchanged() -> None:
    assert list(PHASES) == EXPECTED_PHASES


def test_every_phase_has_its_handler_and_every_handler_its_phase() -> None:
    assert handlers.__all__  # importing the package registered them
    assert set(HANDLERS) == set(PHASES)
    assert {kind for _, kind in PHASES} == set(KINDS)


def test_a_queue_argument_change_forces_replacement_with_its_why() -> None:
    before = Queue("/", "work", "classic", arguments={"x-max-length": 1000})
    after = Queue("/", "work", "quorum", arguments={"x-max-length": 5000})
    fields = field_changes(before, after)
    assert [(f.field, f.within, f.before, f.after) for f in fields] == [
        ("type", "", "classic", "quorum"),
        ("x-max-length", "arguments", 1000, 5000),
    ]
    assert all(f.forces_replacement and "cannot change" in f.why for f in fields)
    assert KINDS["queue"].reason(fields) == "type: classic -> quorum; x-max-length: 1000 -> 5000"


def test_a_policy_change_updates_in_place() -> None:
    before = Policy("/", "limits", "^work$", {"max-length": 10})
    after = Policy("/", "limits", "^work$", {"max-length": 20}, priority=1)
    fields = field_changes(before, after)
    assert [(f.field, f.within) for f in fields] == [("priority", ""), ("max-length", "definition")]
    assert not any(f.forces_replacement for f in fields)


def test_an_unchanged_exchange_has_no_field_changes() -> None:
    exchange = Exchange("/", "orders", "topic", arguments={"alternate-exchange": "lost"})
    assert field_changes(exchange, exchange) == ()
