"""Fixtures for tests that talk to the real broker on this machine (never a mock).

A test talks to a broker when it asks for one of BROKER_FIXTURES (directly or through
another fixture) or carries ``@pytest.mark.broker``; collection marks the first kind
itself, so ``pytest -m "not broker"`` runs the pure tests with no broker listening.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
import rabbit
import requests
from rabbit import AMQP_PORT, AMQP_URL, AUTH, MANAGEMENT_URL, api, fresh_vhost, wait_for

# The CLI, Celery workers and every subprocess reach the broker under test through the same
# variables a user sets, so no test names a port of its own.
os.environ["PROVISION_AMQP_URL"] = AMQP_URL
# With its own credentials, as the default URL has them: a test that gives a wrong AMQP password
# must not make the management API fall back to it.
_management = urlsplit(MANAGEMENT_URL)
os.environ["PROVISION_MANAGEMENT_URL"] = _management._replace(
    netloc=f"{AUTH[0]}:{AUTH[1]}@{_management.netloc.rsplit('@', 1)[-1]}"
).geturl()

# Asking for any of these (even through another fixture) makes a test a broker test.
BROKER_FIXTURES = frozenset({"broker"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test whose fixtures reach a broker, so no new test can forget the marker."""
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


def _management_answers() -> bool:
    try:
        return requests.get(f"{MANAGEMENT_URL}/api/overview", auth=("guest", "guest"), timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def broker() -> None:
    """The management API must answer; enable the plugin when it is off (as scripts/ensure-rabbitmq.sh does)."""
    if not _management_answers():
        if AMQP_PORT != 5672:  # another broker (scripts/test.sh started it): nothing here can enable its plugin
            raise RuntimeError(f"the management API of the broker under test does not answer at {MANAGEMENT_URL}")
        subprocess.run(["rabbitmq-plugins", "enable", "rabbitmq_management"], check=True, capture_output=True)
        wait_for(_management_answers, timeout=60)


@pytest.fixture(autouse=True)
def _broker_only_where_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A marked test gets a ready broker; an unmarked one that reaches for it through rabbit.py fails loudly."""
    if request.node.get_closest_marker("broker") is not None:
        request.getfixturevalue("broker")
        yield
        return
    rabbit.PURE_TEST = request.node.nodeid
    try:
        yield
    finally:
        rabbit.PURE_TEST = ""


@pytest.fixture
def vhost_name(broker: None) -> Iterator[str]:
    """A unique vhost name that does not exist yet; whatever a test made of it is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    api("DELETE", f"vhosts/{quote(name, safe='')}")


@pytest.fixture
def vhost(broker: None, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new vhost with guest permissions, named after the test module (``lock-...``); deleted afterwards."""
    prefix = request.module.__name__.rpartition(".")[2].removeprefix("test_").replace("_", "-")
    with fresh_vhost(prefix) as name:
        yield name
