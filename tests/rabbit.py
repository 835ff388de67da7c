"""Small helpers for tests that talk to the real broker: fresh vhosts, connections, management calls."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pika
import requests

from provisioner.broker.endpoints import Endpoints

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


def stored_arguments(arguments: dict[str, Any], queue_type: str = "classic") -> dict[str, Any]:
    """The arguments the broker under test stores for a queue declared with ``arguments`` (4.x adds a classic type)."""
    if queue_type == "classic" and version() >= (4, 0):
        return {"x-queue-type": "classic", **arguments}
    return dict(arguments)


def default_delivery_limit() -> int | None:
    """How often a quorum queue without a delivery limit redelivers a message: 4.x stops at 20, 3.x never."""
    return 20 if version() >= (4, 0) else None


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
