"""The pure side of a migration: from the broker's state alone, what is left to do."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.diff import differences
from provisioner.live_state import live_from_definitions
from provisioner.migration.steps import (
    Bind,
    Declare,
    Delete,
    LiveQueue,
    Move,
    Observation,
    Probe,
    Swap,
    Unbind,
    is_migration_queue,
    next_steps,
    probe_queue,
    refusal,
    temporary_name,
)
from provisioner.output import plan_lines
from provisioner.plan import Action
from provisioner.topology.model import Binding, Exchange, Queue, Topology, VHost

TARGET = Queue("/", "work", "quorum")
TEMP = temporary_name("work")
OLD = LiveQueue("work", "classic", messages=7)
NEW = LiveQueue("work", "quorum", arguments={"x-queue-type": "quorum"})
TEMPORARY = LiveQueue(TEMP, "quorum", arguments={"x-queue-type": "quorum"})
BINDING = Binding("/", "orders", "work", "queue", "order.created")


def to(queue: str) -> Binding:
    return Binding("/", "orders", queue, "queue", "order.created")


def test_temporary_queue_name_is_the_marker() -> None:
    assert TEMP == "work.provisioner-migrate"
    assert is_migration_queue(TEMP) and not is_migration_queue("work")


def test_start_probes_the_new_declaration_then_declares_an_argument_free_durable_temporary_queue() -> None:
    steps = next_steps(Observation(OLD, None, (BINDING,)), TARGET)
    assert steps == (Probe(probe_queue(TARGET)), Declare(Queue("/", TEMP, "quorum")))


def test_the_probe_has_the_targets_properties_under_a_throwaway_name_and_expires() -> None:
    target = Queue("/", "work", "classic", arguments={"x-max-length": 10})
    probe = probe_queue(target)
    assert (probe.name, probe.type, probe.durable) == ("work.provisioner-probe", "classic", True)
    assert probe.arguments == {"x-max-length": 10, "x-expires": 60_000}
    assert probe_queue(Queue("/", "w", arguments={"x-expires": 5})).arguments == {"x-expires": 5}  # its own wins


def test_classic_to_classic_uses_a_classic_temporary_queue() -> None:
    target = Queue("/", "work", "classic", arguments={"x-max-length": 10})
    assert next_steps(Observation(OLD, None), target)[1] == Declare(Queue("/", TEMP, "classic"))


def test_every_queue_is_declared_with_its_type_classic_too() -> None:
    assert Queue("/", TEMP, "classic").declare_arguments == {"x-queue-type": "classic"}
    assert Queue("/", "q", "quorum", arguments={"x-max-length": 1}).declare_arguments == {
        "x-max-length": 1,
        "x-queue-type": "quorum",
    }


def test_first_phase_probes_again_moves_bindings_binding_first_then_messages_then_swaps_the_old_queue() -> None:
    steps = next_steps(Observation(OLD, TEMPORARY, (BINDING,)), TARGET)
    assert steps == (
        Probe(probe_queue(TARGET)),
        Bind(to(TEMP)),
        Unbind(to("work")),
        Move("work", TEMP),
        Swap(TARGET, quorum=False, temporary=TEMP),
    )


def test_old_queue_gone_declares_the_new_one() -> None:
    assert next_steps(Observation(None, TEMPORARY, (BINDING,)), TARGET) == (Declare(TARGET),)


def test_second_phase_moves_everything_back_and_deletes_the_temporary_queue() -> None:
    steps = next_steps(Observation(NEW, TEMPORARY, (BINDING,)), TARGET)
    assert steps == (Bind(to("work")), Unbind(to(TEMP)), Move(TEMP, "work"), Delete(TEMP, quorum=True))


def test_done_when_the_queue_matches_and_no_temporary_queue_is_left() -> None:
    assert next_steps(Observation(NEW, None, (BINDING,)), TARGET) == ()


def test_argument_forms_the_broker_hands_back_still_match() -> None:
    live = LiveQueue("work", "classic", arguments={"x-max-length": "10"})
    assert live.matches(Queue("/", "work", "classic", arguments={"x-max-length": 10}))


def test_refusals() -> None:
    assert refusal(Observation(OLD, None), TARGET) is None
    assert "stream" in (refusal(Observation(OLD, None), Queue("/", "work", "stream")) or "")
    full = Queue("/", "work", "classic", arguments={"x-max-length": 5})
    assert "7 messages" in (refusal(Observation(OLD, None), full) or "")
    busy = LiveQueue("work", "classic", consumers=2)
    assert "2 consumer" in (refusal(Observation(busy, TEMPORARY), TARGET) or "")
    assert refusal(Observation(busy, TEMPORARY), TARGET, allow_consumers=True) is None
    # once the queue has its new properties, consumers on it are welcome
    assert refusal(Observation(LiveQueue("work", "quorum", consumers=3), TEMPORARY), TARGET) is None
    # a consumer on the temporary queue would keep it from ever being deleted: refused, never 20 rounds
    held = LiveQueue(TEMP, "quorum", consumers=1)
    assert "temporary queue" in (refusal(Observation(NEW, held), TARGET, allow_consumers=True) or "")


# The plan's side: a temporary queue is a change of its queue, whatever state that queue is in.
V = "v"
DESIRED = Topology(
    vhosts=(VHost(V),),
    exchanges=(Exchange(V, "orders", "topic"),),
    queues=(Queue(V, "work", "classic", arguments={"x-max-length": 10}),),
    bindings=(Binding(V, "orders", "work", "queue", "order.created"),),
)


def definitions(*queues: tuple[str, dict[str, Any]], bound_to: str = TEMP) -> dict[str, Any]:
    """Recorded definitions: the exchange, the given queues, the binding on ``bound_to``."""
    return {
        "exchanges": [{"name": "orders", "type": "topic", "durable": True}],
        "queues": [{"name": name, "durable": True, "auto_delete": False, "arguments": a} for name, a in queues],
        "bindings": [
            {"source": "orders", "destination": bound_to, "destination_type": "queue", "routing_key": "order.created"}
        ],
    }


MATCHING = ("work", {"x-max-length": 10})
OLD_ARGUMENTS = ("work", {"x-max-length": 5})
TEMP_QUEUE = (TEMP, {"x-queue-type": "classic"})


@pytest.mark.parametrize(
    ("live", "desired", "reason", "after"),
    [
        (
            definitions(MATCHING, TEMP_QUEUE),
            DESIRED,
            "unfinished migration",
            Queue(V, "work", arguments={"x-max-length": 10}),
        ),
        (definitions(OLD_ARGUMENTS, TEMP_QUEUE), DESIRED, "unfinished migration; x-max-length: 5 -> 10", None),
        (definitions(TEMP_QUEUE), DESIRED, "unfinished migration; the queue is missing", None),
        (
            definitions(OLD_ARGUMENTS, TEMP_QUEUE),
            Topology(vhosts=(VHost(V),)),
            "unfinished migration",
            Queue(V, "work", arguments={"x-max-length": 5}),
        ),
        (
            definitions(TEMP_QUEUE),
            Topology(vhosts=(VHost(V),)),
            "unfinished migration; the queue is missing",
            Queue(V, "work"),
        ),
    ],
    ids=["queue-already-matches", "queue-still-old", "queue-missing", "queue-not-in-topology", "neither"],
)
def test_a_temporary_queue_is_a_migration_to_finish(
    live: dict[str, Any], desired: Topology, reason: str, after: Queue | None
) -> None:
    plan = differences(desired, {V: live_from_definitions(V, live)}, prune=True)
    finish = [c for c in plan.changes if c.parked is not None]
    assert len(finish) == 1 and finish[0].action is Action.REPLACE and finish[0].name == "work"
    assert finish[0].reason == reason
    assert finish[0].parked.name == TEMP and finish[0].parked.bindings == 1
    if after is not None:
        assert finish[0].after == after
    # never listed as unmanaged, never pruned, never a second change for the same queue
    assert [u.resource.name for u in plan.unmanaged if u.resource.kind == "queue"] == []
    assert [c.name for c in plan.changes if c.kind == "queue"] == ["work"]
    assert f"[in {TEMP}: 1 bindings; apply --migrate finishes it]" in "\n".join(line for line, _ in plan_lines(plan))
