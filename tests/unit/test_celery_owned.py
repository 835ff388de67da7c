"""Pure: which live objects are Celery's own (never drift, never pruned), recognised exactly."""

from __future__ import annotations

from provisioner.live_state import celery_delayed_binding, celery_owned, live_from_definitions
from provisioner.topology.model import Binding, Exchange, Queue, Topology, VHost

DESIRED = Topology(
    vhosts=(VHost("v"),),
    exchanges=(Exchange("v", "tasks", "topic"), Exchange("v", "notify", "headers"), Exchange("v", "d", "direct")),
    queues=(Queue("v", "celery", "quorum"), Queue("v", "email", "quorum"), Queue("v", "plain")),
    bindings=(
        Binding("v", "tasks", "celery", routing_key="celery"),
        Binding("v", "notify", "email", arguments={"x-match": "all", "channel": "email"}),
        Binding("v", "d", "plain", routing_key="plain"),
        Binding("v", "tasks", "plain", routing_key="#"),
    ),
)


def test_only_the_delayed_delivery_binding_of_a_topology_binding_is_celerys() -> None:
    assert celery_delayed_binding(Binding("v", "tasks", "celery", routing_key="#.celery"), DESIRED)
    not_celerys = [
        Binding("v", "tasks", "celery", routing_key="#.other"),  # another key
        Binding("v", "tasks", "plain", routing_key="#.celery"),  # another queue
        Binding("v", "tasks", "celery", routing_key="#.celery", arguments={"a": 1}),
        Binding("v", "notify", "email", routing_key="#."),  # headers: would capture every message
        Binding("v", "d", "plain", routing_key="#.plain"),  # Celery never binds a direct exchange
        Binding("v", "tasks", "plain", routing_key="#"),  # the topology's own binding stays managed
    ]
    assert not any(celery_delayed_binding(binding, DESIRED) for binding in not_celerys)


def test_celery_delayed_objects_are_recognised_by_exact_name() -> None:
    assert celery_owned("exchange", "celery_delayed_delivery") and celery_owned("queue", "celery_delayed_27")
    assert celery_owned("exchange", "celery_delayed_0")
    assert not celery_owned("queue", "celery_delayed_28") and not celery_owned("exchange", "celery_delayed_orders")
    assert not celery_owned("queue", "celery_delayed_delivery")  # kombu declares no such queue


def test_live_state_leaves_out_the_delayed_bindings_only() -> None:
    definitions = {
        "exchanges": [{"name": "tasks", "type": "topic"}, {"name": "celery_delayed_delivery", "type": "topic"}],
        "queues": [{"name": "celery", "arguments": {"x-queue-type": "quorum"}}],
        "bindings": [
            {"source": "tasks", "destination": "celery", "destination_type": "queue", "routing_key": key}
            for key in ("celery", "#.celery", "#.other")
        ]
        + [
            {
                "source": "celery_delayed_delivery",
                "destination": "tasks",
                "destination_type": "exchange",
                "routing_key": "#.celery",
            }
        ],
    }
    live = live_from_definitions("v", definitions, desired=DESIRED)
    assert {b.routing_key for b in live.topology.bindings} == {"celery", "#.other"}
    assert {b.routing_key for b in live_from_definitions("v", definitions).topology.bindings} == {
        "celery",
        "#.celery",
        "#.other",
    }
