"""Queues are counted with passive declares pipelined on a few channels (issue 29), against the real broker.

The counts must be what one passive declare after another gives, each under its
own name (every queue holds a different number of messages), a missing queue
must stay missing, the first refusal in the caller's order must be the one
raised, and the connection must be left as counting one by one left it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pika
import pika.channel
import pika.exceptions
import pika.spec
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from provision_cli import run, write
from rabbit import endpoints, fresh_vhost, parameters, publish_all_confirmed

from provisioner.broker.amqp import Amqp, count_queues, not_found_overflows
from provisioner.broker.connect import drop_socket
from provisioner.broker.passive import LANES
from provisioner.dlq import broker
from provisioner.dlq.letters import dead_letter_queues
from provisioner.errors import BrokerError
from provisioner.topology import load

QUEUES = 200


def publish_confirmed(vhost: str, counts: dict[str, int]) -> None:
    """``counts[name]`` messages into each queue, pipelined, every one confirmed (so every one is counted)."""
    connection = pika.BlockingConnection(parameters(vhost))
    persistent = pika.BasicProperties(delivery_mode=2)
    publish_all_confirmed(
        connection, ((name, b"m", persistent) for name, count in counts.items() for _ in range(count))
    )
    connection.close()


@pytest.fixture(scope="module")
def shelves(broker: None) -> Iterator[tuple[str, dict[str, int], list[str]]]:
    """QUEUES queues, the i-th holding i messages, three empty ones with 1, 2 and 3 consumers, and one name long
    enough that its 404 would pass 255 bytes; the names to count, a missing one after every fourth.

    Shared by the module's tests: counting changes nothing.
    """
    with fresh_vhost("pipeline-counts") as vhost:
        yield from _shelves(vhost)


def _shelves(vhost: str) -> Iterator[tuple[str, dict[str, int], list[str]]]:
    long_name = "long-" + "x" * (250 - len(vhost))
    assert not_found_overflows(long_name, vhost)
    held = {f"c{index:03d}": index for index in range(QUEUES)} | {"busy1": 0, "busy2": 0, "busy3": 0, long_name: 7}
    connection = pika.BlockingConnection(parameters(vhost))
    setup = connection.channel()
    for name in held:
        setup.queue_declare(name, durable=True)
    publish_confirmed(vhost, held)
    consumers = connection.channel()  # consumers of empty queues: nothing is delivered, every count stays
    for count in (1, 2, 3):
        for _ in range(count):
            consumers.basic_consume(f"busy{count}", lambda *_: None)
    names: list[str] = []
    for index, name in enumerate(held):
        names.append(name)
        if index % 4 == 3:
            names.append(f"gone{index:03d}")
        if index == QUEUES // 2:
            names.append(long_name)  # in the middle, as well as at the end
    yield vhost, held, names
    connection.close()


def _blocking_declares(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queues declared the blocking way (one round trip each)."""
    declared: list[str] = []
    original = BlockingChannel.queue_declare

    def spy(self: BlockingChannel, queue: str, *args: Any, **kwargs: Any) -> Any:
        declared.append(queue)
        return original(self, queue, *args, **kwargs)

    monkeypatch.setattr(BlockingChannel, "queue_declare", spy)
    return declared


def _most_in_flight(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """[the most passive declares ever waiting for their answer at once] on the underlying channels."""
    most = [0]
    waiting: set[Any] = set()  # channels with a declare sent and not answered (a 404 closes its channel instead)
    original = pika.channel.Channel.queue_declare

    def spy(self: Any, queue: str, *args: Any, callback: Any = None, **kwargs: Any) -> Any:
        def answered(frame: Any, _callback: Any = callback) -> None:
            waiting.discard(self)
            _callback(frame)

        if callback is not None and kwargs.get("passive"):
            waiting.add(self)
            most[0] = max(most[0], sum(1 for channel in waiting if channel.is_open))
            callback = answered
        return original(self, queue, *args, callback=callback, **kwargs)

    monkeypatch.setattr(pika.channel.Channel, "queue_declare", spy)
    return most


def test_many_queues_are_counted_exactly_each_under_its_own_name_with_many_declares_in_flight(
    shelves: tuple[str, dict[str, int], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    vhost, held, names = shelves
    blocking, most = _blocking_declares(monkeypatch), _most_in_flight(monkeypatch)
    expected = {name: (count, 0) for name, count in held.items()} | {"busy1": (0, 1), "busy2": (0, 2), "busy3": (0, 3)}

    counts = Amqp(endpoints(), vhost).queue_counts(names)

    assert counts == expected
    assert list(counts) == list(dict.fromkeys(name for name in names if name in held))  # the order of ``names``
    assert most[0] == LANES  # pipelined: 32 declares waited for at once, not one
    long_name = next(name for name in held if name.startswith("long-"))
    assert blocking == [long_name, long_name]  # only the name whose 404 could close the connection, one by one


def test_missing_queues_stay_missing_in_place_and_the_connection_is_left_as_it_was(
    shelves: tuple[str, dict[str, int], list[str]],
) -> None:
    vhost, held, names = shelves
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        found = list(count_queues(connection, names))
        assert [name for name, _ in found] == names
        assert {name: counts for name, counts in found if counts is None} == {
            name: None for name in names if name not in held
        }
        assert connection.is_open
        assert connection.channel().channel_number == 1  # no lane left open
    finally:
        connection.close()  # raises if a lane channel were left without its blocking wrapper


def test_a_connection_allowed_one_channel_counts_the_same(shelves: tuple[str, dict[str, int], list[str]]) -> None:
    """Lanes stay under the negotiated channel_max; a lane whose channel a 404 closed opens the next one after."""
    vhost, held, names = shelves
    connection = pika.BlockingConnection(parameters(vhost, channel_max=1))
    try:
        found = dict(count_queues(connection, names))
    finally:
        connection.close()
    assert {name: counts[0] for name, counts in found.items() if counts is not None} == held


def _exclusive(vhost: str, name: str) -> pika.BlockingConnection:
    holder = pika.BlockingConnection(parameters(vhost))
    holder.channel().queue_declare(name, exclusive=True)
    return holder


def test_a_queue_another_connection_holds_exclusively_is_the_405_line(vhost: str) -> None:
    connection = pika.BlockingConnection(parameters(vhost))
    setup = connection.channel()
    names = [f"c{index:03d}" for index in range(QUEUES)]
    for name in names:
        setup.queue_declare(name, durable=True)
    connection.close()
    holder = _exclusive(vhost, "held")
    try:
        with pytest.raises(BrokerError) as raised:
            Amqp(endpoints(), vhost).queue_counts([*names[:60], "gone", "held", *names[60:]])
    finally:
        holder.close()
    assert str(raised.value).startswith(  # the missing one before it is left out, as before
        "reading queue 'held': 405 RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'held' "
        f"in vhost '{vhost}'"
    ), raised.value


def test_the_first_problem_in_the_callers_order_is_the_one_raised_and_the_connection_goes_on(
    tmp_path: Path, vhost: str
) -> None:
    """`dlq list` stops at the first missing or refused dead-letter queue of its list, whichever comes first."""
    text = "version: 1\nvhost: ${TEST_VHOST}\nqueues:\n" + "".join(
        f"  w{index:03d}: {{dead_letter: true}}\n" for index in range(60)
    )
    assert run("apply", write(tmp_path, text), vhost=vhost).exit_code == 0
    queues = dead_letter_queues(load([str(tmp_path / "topology.yaml")], {"TEST_VHOST": vhost}))
    assert len(queues) == 60
    connection = pika.BlockingConnection(parameters(vhost))
    connection.channel().queue_delete("w040.dead")
    holder = _exclusive(vhost, "w020.dead.held")
    try:
        held = replace(queues[20], name="w020.dead.held")
        first_missing = [*queues[:10], queues[40], *queues[10:20], held, *queues[20:]]
        with pytest.raises(BrokerError, match=r"^dead-letter queue 'w040.dead' does not exist in vhost"):
            broker.message_counts(connection, first_missing)
        first_held = [*queues[:10], held, *queues[10:]]
        with pytest.raises(BrokerError, match=r"^reading queue 'w020.dead.held': 405 RESOURCE_LOCKED"):
            broker.message_counts(connection, first_held)
        # The connection goes on (`dlq list` reads letters on it next).
        assert broker.message_counts(connection, list(queues[:40])) == {queue.name: 0 for queue in queues[:40]}
    finally:
        holder.close()
        connection.close()


def test_a_connection_lost_while_counting_raises_and_never_hangs(
    shelves: tuple[str, dict[str, int], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    vhost, _, names = shelves
    connection = pika.BlockingConnection(parameters(vhost))
    original = pika.channel.Channel.queue_declare
    sent = [0]

    def cut_after_100(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        if sent[0] == 100:
            drop_socket(connection)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pika.channel.Channel, "queue_declare", cut_after_100)
    outcome: list[BaseException | None] = []

    def count() -> None:
        try:
            list(count_queues(connection, names))
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=count, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "counting on a lost connection hung"
    assert isinstance(outcome[0], pika.exceptions.AMQPConnectionError), outcome
    assert not connection.is_open


def test_dlq_list_of_many_dead_letter_queues_is_exact(tmp_path: Path, vhost: str) -> None:
    size = 80
    text = "version: 1\nvhost: ${TEST_VHOST}\nqueues:\n" + "".join(
        f"  w{index:03d}: {{dead_letter: true}}\n" for index in range(size)
    )
    file = write(tmp_path, text)
    assert run("apply", file, vhost=vhost).exit_code == 0
    expected = {f"w{index:03d}.dead": (index * 7) % size for index in range(size)}  # each count a different one
    publish_confirmed(vhost, expected)

    result = run("dlq", "list", file, "--json", vhost=vhost)

    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["dead_letter_queues"]
    assert [(row["name"], row["messages"]) for row in rows] == list(expected.items())
