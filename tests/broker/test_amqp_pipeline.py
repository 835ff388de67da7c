"""Declarations and bindings go out pipelined (no-wait, one synchronous command per batch), against the real broker.

What is pipelined must still be all there (counted over AMQP), a refusal inside a
batch must still name its object and the broker's words, and the done count must
say how far the apply got.
"""

from __future__ import annotations

import pika
import pytest
from rabbit import endpoints, parameters

from provisioner.broker import amqp
from provisioner.broker.amqp import BATCH, Amqp, Operation, OperationFailed
from provisioner.topology.model import Binding, Exchange, Queue

COUNT = 2 * BATCH + 37  # three batches on one lane, the last one short


def _synchronous_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every command sent the waiting way (the no-wait ones are not in VERBS)."""
    calls: list[str] = []
    for verb, function in list(amqp.VERBS.items()):

        def counted(channel, operation, _function=function, _verb=verb):  # type: ignore[no-untyped-def]
            calls.append(_verb)
            _function(channel, operation)

        monkeypatch.setitem(amqp.VERBS, verb, counted)
    return calls


def _present(vhost: str, names: list[str]) -> int:
    """How many of these queues exist, by passive declares over AMQP."""
    connection = pika.BlockingConnection(parameters(vhost))
    found = 0
    try:
        channel = connection.channel()
        for name in names:
            try:
                channel.queue_declare(name, passive=True)
                found += 1
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
    finally:
        connection.close()
    return found


def test_a_batch_costs_one_synchronous_command_and_everything_arrives(
    vhost: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _synchronous_calls(monkeypatch)
    client = Amqp(endpoints(), vhost)
    names = [f"p{index:04d}" for index in range(COUNT)]
    exchange = Exchange(vhost, "work", "topic")
    assert client.execute([Operation("declare", exchange)], workers=1) == 1
    queues = [Operation("declare", Queue(vhost, name, arguments={"x-max-length": 10})) for name in names]
    assert client.execute(queues, workers=1) == COUNT
    bindings = [Operation("bind", Binding(vhost, "work", name, "queue", f"jobs.{name}")) for name in names]
    assert client.execute(bindings, workers=1) == COUNT
    assert client.operations_sent == 1 + 2 * COUNT
    assert calls.count("declare") == 1 + 3 and calls.count("bind") == 3  # one per batch, not one per object
    assert _present(vhost, names) == COUNT
    connection = pika.BlockingConnection(parameters(vhost))
    try:  # the bindings arrived too: a message to each key is routed (mandatory publish would bounce otherwise)
        channel = connection.channel()
        channel.confirm_delivery()
        for name in (names[0], names[BATCH], names[-1]):
            channel.basic_publish("work", f"jobs.{name}", b"x", mandatory=True)
            assert channel.queue_declare(name, passive=True).method.message_count == 1
    finally:
        connection.close()


def test_a_refusal_inside_a_batch_names_the_object_and_counts_what_was_done(vhost: str) -> None:
    names = [f"r{index:04d}" for index in range(COUNT)]
    refused = names[BATCH + 5]  # in the middle of the second batch, sent with no-wait
    connection = pika.BlockingConnection(parameters(vhost))
    connection.channel().queue_declare(refused, durable=True, arguments={"x-max-length": 1})
    connection.close()
    client = Amqp(endpoints(), vhost)
    operations = [Operation("declare", Queue(vhost, name)) for name in names]
    with pytest.raises(OperationFailed) as caught:
        client.execute(operations, workers=1)
    assert caught.value.operation.resource.name == refused
    assert "406 PRECONDITION_FAILED" in caught.value.reply and "x-max-length" in caught.value.reply
    assert caught.value.done == BATCH + 5  # the first batch, and the second up to the refused queue
    assert _present(vhost, names[: BATCH + 5]) == BATCH + 5
    assert _present(vhost, names[BATCH + 6 :]) == 0  # the lane stopped at the refusal
