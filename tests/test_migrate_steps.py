"""The pure side of a migration: from the broker's state alone, what is left to do."""

from __future__ import annotations

from provisioner.migrate import (
    Bind,
    Declare,
    Delete,
    LiveQueue,
    Move,
    Observation,
    Unbind,
    is_migration_queue,
    next_steps,
    refusal,
    temporary_name,
)
from provisioner.topology.model import Binding, Queue

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


def test_start_declares_an_argument_free_durable_temporary_queue() -> None:
    steps = next_steps(Observation(OLD, None, (BINDING,)), TARGET)
    assert steps == (Declare(Queue("/", TEMP, "quorum")),)


def test_classic_to_classic_uses_a_classic_temporary_queue() -> None:
    target = Queue("/", "work", "classic", arguments={"x-max-length": 10})
    assert next_steps(Observation(OLD, None), target) == (Declare(Queue("/", TEMP, "classic")),)


def test_first_phase_moves_bindings_binding_first_then_messages_then_deletes_the_old_queue() -> None:
    steps = next_steps(Observation(OLD, TEMPORARY, (BINDING,)), TARGET)
    assert steps == (Bind(to(TEMP)), Unbind(to("work")), Move("work", TEMP), Delete("work", quorum=False))


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
