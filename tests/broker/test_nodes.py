"""The brokers the suite runs against: the one chosen by the environment, and throwaway nodes of each installation."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from nodes import INSTALLATIONS, NodeConfig, ThrowawayNode
from rabbit import (
    DENY_DEPRECATED,
    INSTALLATION,
    api,
    default_delivery_limit,
    fresh_vhost,
    parameters,
    requeues_count_as_deliveries,
    stored_arguments,
    version,
)

REPO = Path(__file__).parent.parent.parent


@pytest.mark.broker
def test_the_broker_under_test_is_the_chosen_installation() -> None:
    """A run meant for 4.0 that reached the machine's 3.10 node (or the reverse) fails here, not silently."""
    assert version() == tuple(int(part) for part in INSTALLATION.split("."))
    assert api("GET", "overview").json()["rabbitmq_version"].startswith(f"{INSTALLATION}.")


@pytest.mark.broker
def test_tests_know_what_the_broker_under_test_stores() -> None:
    """Stored arguments (4.x adds x-queue-type: classic) and the default delivery limit (4.x: 20), counted over AMQP."""
    with fresh_vhost("stored") as vhost:
        connection = pika.BlockingConnection(parameters(vhost))
        try:
            channel = connection.channel()
            channel.queue_declare("classic", durable=True, arguments={"x-max-length": 10})
            channel.queue_declare("quorum", durable=True, arguments={"x-queue-type": "quorum"})
            stored = api("GET", f"queues/{vhost}/classic").json()["arguments"]
            assert stored == stored_arguments({"x-max-length": 10})
            assert api("GET", f"queues/{vhost}/quorum").json()["arguments"] == {"x-queue-type": "quorum"}
            channel.confirm_delivery()  # the message is in the queue before the first get
            channel.basic_publish("", "quorum", b"poison", pika.BasicProperties(delivery_mode=2))
            deliveries = 0
            while deliveries <= 25:  # a limit of 20 is passed well before this
                method, _, _ = channel.basic_get("quorum")
                if method is None:
                    break
                deliveries += 1
                channel.basic_nack(method.delivery_tag, requeue=True)
            left = 0 if channel.basic_get("quorum", auto_ack=True)[0] is None else 1  # after the requeues, in order
        finally:
            connection.close()
    limit = default_delivery_limit()
    if limit is None or not requeues_count_as_deliveries():  # 3.x: no default; 4.3: requeues are not counted
        assert deliveries == 26 and left == 1
    else:
        assert deliveries == limit + 1 and left == 0  # the first delivery and `limit` redeliveries


def _throwaway(installation: str, deny: bool) -> Iterator[ThrowawayNode]:
    if INSTALLATIONS[installation].root is not None:  # idempotent: builds the root only when it is missing
        subprocess.run(["bash", str(REPO / "scripts" / "rabbitmq4.sh"), "build", installation], check=True)
    node = ThrowawayNode(NodeConfig.fresh(INSTALLATIONS[installation]), deny_deprecated=deny)
    try:
        node.start()
        yield node
    finally:
        node.destroy()


# Each leg of scripts/test.sh starts nodes of its own installation: every installation is checked on its leg.
@pytest.fixture(params=[INSTALLATION])
def node(request: pytest.FixtureRequest, broker: None) -> Iterator[ThrowawayNode]:
    """A node of the installation's defaults, to restart (see ThrowawayNode on denying nodes that restart)."""
    yield from _throwaway(request.param, deny=False)


@pytest.fixture(params=[INSTALLATION])
def denying_node(request: pytest.FixtureRequest, broker: None) -> Iterator[ThrowawayNode]:
    """A node with every deprecated feature denied, never restarted."""
    yield from _throwaway(request.param, deny=True)


def test_a_throwaway_node_runs_its_installations_rabbitmq(node: ThrowawayNode) -> None:
    overview = api("GET", "overview", base=f"http://127.0.0.1:{node.config.management_port}").json()
    assert overview["rabbitmq_version"].startswith(f"{node.config.installation.name}.")
    connection = pika.BlockingConnection(node.parameters())
    try:
        channel = connection.channel()
        channel.queue_declare("kept", durable=True)
        channel.basic_publish("", "kept", b"x", pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()
    node.restart()  # its own name, ports and data: it comes back with the message
    connection = pika.BlockingConnection(node.parameters())
    try:
        assert connection.channel().queue_declare("kept", passive=True).method.message_count == 1
    finally:
        connection.close()


def test_denied_deprecated_features_are_refused_on_4x_only(denying_node: ThrowawayNode) -> None:
    """deny_deprecated=True: 4.x refuses a transient non-exclusive queue; 3.10 knows no such setting."""
    connection = pika.BlockingConnection(denying_node.parameters())
    try:
        if denying_node.config.installation.name == "3.10":
            assert connection.channel().queue_declare("transient", durable=False).method.queue == "transient"
        else:
            with pytest.raises(pika.exceptions.ConnectionClosedByBroker, match="transient_nonexcl_queues"):
                connection.channel().queue_declare("transient", durable=False)
    finally:
        if connection.is_open:
            connection.close()


@pytest.mark.broker
def test_a_denying_run_denies_on_the_broker_under_test() -> None:
    """PROVISION_TEST_BROKER=4.0-deny really runs the suite with deprecated features denied."""
    with fresh_vhost("deny") as vhost:
        connection = pika.BlockingConnection(parameters(vhost))
        try:
            if DENY_DEPRECATED:
                with pytest.raises(pika.exceptions.ConnectionClosedByBroker, match="transient_nonexcl_queues"):
                    connection.channel().queue_declare("transient", durable=False)
            else:
                assert connection.channel().queue_declare("transient", durable=False).method.queue == "transient"
        finally:
            if connection.is_open:
                connection.close()
