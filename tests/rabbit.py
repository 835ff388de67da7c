"""Small helpers for tests that talk to the real broker: fresh vhosts, connections, management calls."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pika
import pika.spec
import requests

from provisioner.broker.endpoints import Endpoints
from provisioner.broker.pump import close_quietly_channel, raw_channel

# The broker under test: the machine's node by default; scripts/test.sh points these at another
# (PROVISION_TEST_BROKER=4.0). Every test reaches the broker through these names, never a literal port.
HOST = os.environ.get("PROVISION_TEST_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("PROVISION_TEST_AMQP_PORT", "5672"))
MANAGEMENT_URL = os.environ.get("PROVISION_TEST_MANAGEMENT_URL", f"http://{HOST}:15672")
AUTH = ("guest", "guest")
AMQP_URL = f"amqp://{AUTH[0]}:{AUTH[1]}@{HOST}:{AMQP_PORT}/"
# Which RabbitMQ installation throwaway nodes come from (tests/nodes.py INSTALLATIONS), and whether
# every deprecated feature is denied there and on the broker under test.
INSTALLATION = os.environ.get("PROVISION_TEST_RABBITMQ", "3.10")
DENY_DEPRECATED = os.environ.get("PROVISION_TEST_DENY_DEPRECATED", "") == "1"

T = TypeVar("T")

# The node id of the running test while it is not marked broker (conftest sets it): such a test
# must not reach the broker, and the helpers below say so instead of hanging on a closed port.
PURE_TEST = ""


def _reaching_the_broker() -> None:
    if PURE_TEST:
        raise AssertionError(f"{PURE_TEST} talks to the broker: mark it @pytest.mark.broker or ask for `broker`")


def amqp_url(vhost: str = "") -> str:
    """The broker under test's AMQP URL, for a vhost (quoted, so "/" is "%2F")."""
    return AMQP_URL + quote(vhost, safe="")


def endpoints() -> Endpoints:
    """The provisioner's endpoints for the broker under test."""
    return Endpoints(amqp_url=AMQP_URL, management_url=MANAGEMENT_URL)


@cache
def version() -> tuple[int, int]:
    """The broker under test's RabbitMQ version, major and minor."""
    major, minor = api("GET", "overview").json()["rabbitmq_version"].split(".")[:2]
    return int(major), int(minor)


def version_text() -> str:
    """The broker under test's version as "major.minor"."""
    return ".".join(map(str, version()))


def stored_arguments(arguments: dict[str, Any], queue_type: str = "classic") -> dict[str, Any]:
    """The arguments the broker under test stores for a queue declared with ``arguments`` (4.x adds a classic type)."""
    if queue_type == "classic" and version() >= (4, 0):
        return {"x-queue-type": "classic", **arguments}
    return dict(arguments)


def default_delivery_limit() -> int | None:
    """How often a quorum queue without a delivery limit redelivers a message: 4.x stops at 20, 3.x never."""
    return 20 if version() >= (4, 0) else None


def requeues_count_as_deliveries() -> bool:
    """Whether a requeue (nack or reject with requeue) counts against a quorum queue's delivery limit.

    Up to 4.2 it does. RabbitMQ 4.3 counts only failed deliveries (a consumer's
    channel or connection gone with the message unacked); a requeue raises the
    message's ``x-acquired-count`` instead, so a requeue loop is never bounded.
    """
    return version() < (4, 3)


def refuses_transient_queues() -> bool:
    """Whether the broker under test refuses a non-durable, non-exclusive queue (541 transient_nonexcl_queues).

    4.x does when every deprecated feature is denied; 4.3.6 still permits it by default.
    """
    return DENY_DEPRECATED and version() >= (4, 0)


def refuses_queue_master_locator() -> bool:
    """Whether the broker refuses x-queue-master-locator and the queue-master-locator policy key.

    Denied by default from RabbitMQ 4.3 (deprecation phase denied_by_default), and on 4.0 when denied.
    """
    return version() >= (4, 3) or (DENY_DEPRECATED and version() >= (4, 0))


def refuses_queue_version_1() -> bool:
    """Whether the broker refuses x-queue-version 1 (classic queue storage v1 is gone in RabbitMQ 4.3)."""
    return version() >= (4, 3)


# What RabbitMQ 3.10's operator policies take at all (rabbit_policies: the operator policy validators).
OPERATOR_POLICY_KEYS_3X = frozenset(
    {"expires", "message-ttl", "max-length", "max-length-bytes", "max-in-memory-length", "max-in-memory-bytes"}
)


def knows_policy_key(place: str, key: str) -> bool:
    """Whether the broker under test knows a policy key where it is written ("policy" or "operator policy").

    3.x refuses, as not recognised, what no 4.x change is about: consumer-timeout
    came in 3.12, and its operator policies take only a few limits.
    """
    if version() >= (4, 0):
        return True
    if place == "operator policy":
        return key in OPERATOR_POLICY_KEYS_3X
    return not (key == "consumer-timeout" and version() < (3, 12))


def checks_topic_permission_exchanges() -> bool:
    """Whether a topic permission on an exchange that does not exist is refused (400 no_such_exchange): 4.3."""
    return version() >= (4, 3)


def drops_topic_permissions_with_their_exchange() -> bool:
    """Whether deleting an exchange deletes the topic permissions on it: 4.3 (3.10.8 and 4.0.5 keep them)."""
    return version() >= (4, 3)


def definitions_leave_out_internal_exchanges() -> bool:
    """Whether GET /api/definitions omits internal exchanges (4.3.6 does; 3.10.8 and 4.0.5 list them)."""
    return version() >= (4, 3)


def refuses_global_qos_on_quorum_queues() -> bool:
    """Whether consuming a quorum queue on a channel with global QoS fails (540): up to 4.2; 4.3 downgrades it."""
    return version() < (4, 3)


def answers_definitions_etag() -> bool:
    """Whether GET /api/definitions answers an ETag header (from RabbitMQ 4.3.5)."""
    return version() >= (4, 3)


def protects_users_and_vhosts() -> bool:
    """Whether users tagged ``protected`` refuse changes over HTTP and vhosts can be protected from deletion."""
    return version() >= (4, 3)


def keeps_exclusive_queues_of_a_lost_node() -> bool:
    """Whether a killed node's exclusive queues stay (RESOURCE_LOCKED) until it returns: Khepri, 4.3."""
    return INSTALLATION == "4.3"


def metadata_store() -> str:
    """Where the broker keeps its metadata: Khepri only from RabbitMQ 4.3 (feature flag khepri_db), Mnesia before."""
    return "khepri" if version() >= (4, 3) else "mnesia"


def api(method: str, path: str, base: str = MANAGEMENT_URL, **kwargs: Any) -> requests.Response:
    """One management API call (path after /api/).

    A shared broker under load can take longer than a request's timeout (creating
    a vhost, say): GET, PUT and DELETE are idempotent, so a timed-out one is sent again.
    """
    _reaching_the_broker()
    while True:
        try:
            return requests.request(method, f"{base}/api/{path}", auth=AUTH, timeout=10, **kwargs)
        except requests.Timeout:
            if method.upper() not in ("GET", "PUT", "DELETE"):
                raise


def parameters(vhost: str, port: int = AMQP_PORT, **kwargs: Any) -> pika.ConnectionParameters:
    """Connection parameters for a vhost of the broker under test."""
    _reaching_the_broker()
    return pika.ConnectionParameters(HOST, port, vhost, pika.PlainCredentials(*AUTH), **kwargs)


@contextmanager
def fresh_vhost(prefix: str = "test", base: str = MANAGEMENT_URL) -> Iterator[str]:
    """A new, uniquely named vhost with guest permissions, deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    api("PUT", f"vhosts/{quote(name, safe='')}", base).raise_for_status()
    api(
        "PUT",
        f"permissions/{quote(name, safe='')}/guest",
        base,
        json={"configure": ".*", "write": ".*", "read": ".*"},
    ).raise_for_status()
    try:
        yield name
    finally:
        api("DELETE", f"vhosts/{quote(name, safe='')}", base)


def wait_for(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


def rabbitmqctl(*argv: str) -> str:
    """``rabbitmqctl argv`` of the broker under test (the machine's, or the node scripts/test.sh started)."""
    _reaching_the_broker()
    folder = os.environ.get("PROVISION_TEST_NODE_FOLDER")
    if folder is None:
        command, environment = ["rabbitmqctl", *argv], dict(os.environ)
    else:
        from nodes import NodeConfig

        config = NodeConfig.from_json((Path(folder) / "node.json").read_text())
        command, environment = config.command("rabbitmqctl", "-n", config.name, *argv)
    return subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout


def queue_policy(vhost: str, queue: str, field: str = "policy") -> Any:
    """What the broker itself says applies to a queue (``policy`` or ``effective_policy_definition``).

    The management API says it, except on a broker that denies the deprecated
    management metrics collection: then the node under test's rabbitmqctl does.
    """
    found = api("GET", f"queues/{quote(vhost, safe='')}/{quote(queue, safe='')}").json()
    if field in found or not DENY_DEPRECATED:
        return found.get(field)
    from nodes import NodeConfig  # the node scripts/test.sh started for this run

    config = NodeConfig.from_json((Path(os.environ["PROVISION_TEST_NODE_FOLDER"]) / "node.json").read_text())
    argv, environment = config.command(
        "rabbitmqctl", "list_queues", "-q", "-p", vhost, "--formatter", "json", "name", field
    )
    listed = json.loads(subprocess.run(argv, env=environment, check=True, capture_output=True, text=True).stdout)
    value = next(row[field] for row in listed if row["name"] == queue)
    if isinstance(value, list):  # a definition comes as [key, value] pairs
        return dict(value)
    return value or None  # rabbitmqctl says "" where the API says nothing


def publish_all_confirmed(
    connection: pika.BlockingConnection, sends: Iterable[tuple[str, bytes, pika.BasicProperties]]
) -> int:
    """Each (queue, body, properties) published pipelined on one raw channel, then waited for until the broker
    confirmed every one (only a confirmed message is the broker's to keep; RabbitMQ 4.0 loses unconfirmed ones
    still in a classic queue's write buffer to a node kill); how many. The channel is closed, the connection kept.
    """
    channel = raw_channel(connection)
    confirmed: set[int] = set()
    upto = [0]

    def on_confirm(frame: Any) -> None:
        assert isinstance(frame.method, pika.spec.Basic.Ack), frame.method
        if frame.method.multiple:
            upto[0] = max(upto[0], frame.method.delivery_tag)
        else:
            confirmed.add(frame.method.delivery_tag)

    selected: list[bool] = []
    channel.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: selected.append(True))
    while not selected:
        connection.process_data_events(time_limit=0.05)
    sent = 0
    for queue, body, properties in sends:
        channel.basic_publish("", queue, body, properties)
        sent += 1
    while not all(tag <= upto[0] or tag in confirmed for tag in range(1, sent + 1)):
        connection.process_data_events(time_limit=0.05)
    close_quietly_channel(connection, channel)  # a raw channel left open trips BlockingConnection.close
    return sent


def consume_all(channel: Any, queue: str) -> list[bytes]:
    """Every message of a queue nobody else consumes, taken by a consumer (a get per message is slow)."""
    total = channel.queue_declare(queue, passive=True).method.message_count
    seen: list[bytes] = []
    if total:
        channel.basic_qos(prefetch_count=1000)
        for _method, _properties, body in channel.consume(queue, auto_ack=True):
            seen.append(body)
            if len(seen) == total:
                break
        channel.cancel()
    return seen


def protects_plugin_queues() -> bool:
    """Whether the broker has protected queues: a plugin's own, with an internal owner (from RabbitMQ 4.1)."""
    return version() >= (4, 1)


def declare_protected_queue(vhost: str, name: str) -> None:
    """A queue with an internal owner (the default exchange), as a plugin declares its own: how RabbitMQ's
    own test suite makes one (rabbit_amqqueue_SUITE); the names must be plain ASCII."""
    resource = f'rabbit_misc:r(<<"{vhost}">>, queue, <<"{name}">>)'
    rabbitmqctl(
        "eval",
        f'Q = amqqueue:new({resource}, none, true, false, none, [], <<"{vhost}">>, #{{}}, rabbit_classic_queue), '
        f'IQ = amqqueue:make_internal(Q, rabbit_misc:r(<<"{vhost}">>, exchange, <<"amq.default">>)), '
        "{new, _} = rabbit_queue_type:declare(IQ, node()), ok.",
    )


def exists(vhost: str, kind: str, name: str) -> bool:
    """Whether an exchange or queue exists, by passive declare."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        channel = connection.channel()
        if kind == "exchange":
            channel.exchange_declare(name, passive=True)
        else:
            channel.queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()
