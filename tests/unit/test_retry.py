"""Retry: transient faults are retried with growing pauses and a bound; permanent ones at once."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
import requests

from provisioner.broker.pump import MoveNacked, MoveRefused
from provisioner.broker.retry import Backoff, call_with_retry, is_transient
from provisioner.errors import BrokerError


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


def wrapped(cause: BaseException) -> BrokerError:
    try:
        raise BrokerError("management API said no") from cause
    except BrokerError as error:
        return error


TRANSIENT = [
    ConnectionResetError("reset"),
    ConnectionRefusedError("refused"),
    pika.exceptions.AMQPConnectionError("refused"),
    pika.exceptions.StreamLostError("lost"),
    pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection closure"),
    requests.ConnectionError("refused"),
    requests.Timeout("slow"),
    http_error(500),
    http_error(503),
    wrapped(http_error(502)),
    wrapped(ConnectionResetError("reset")),
    wrapped(MoveNacked("the broker refused a copy (nack)")),  # a queue restarting: a migration re-runs
]
PERMANENT = [
    http_error(400),
    http_error(401),
    http_error(403),
    http_error(404),
    pika.exceptions.ProbableAuthenticationError("auth"),
    pika.exceptions.ProbableAccessDeniedError("vhost"),
    pika.exceptions.ConnectionClosedByBroker(403, "ACCESS_REFUSED"),
    pika.exceptions.ConnectionClosedByBroker(530, "NOT_ALLOWED - vhost not found"),
    pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg"),
    pika.exceptions.ChannelClosedByBroker(404, "NOT_FOUND - no queue"),
    pika.exceptions.ChannelClosedByBroker(405, "RESOURCE_LOCKED"),
    wrapped(http_error(401)),
    BrokerError("plain"),
    wrapped(MoveRefused("no queue takes the message (unroutable)")),
    ValueError("a bug"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=repr)
def test_transient_faults_are_recognised(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", PERMANENT, ids=repr)
def test_permanent_faults_are_not(error: BaseException) -> None:
    assert not is_transient(error)


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then returns how many calls it took."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.calls


def test_transient_fault_is_retried_with_growing_pauses() -> None:
    pauses: list[float] = []
    flaky = Flaky(4, ConnectionResetError("reset"))
    result = call_with_retry(flaky, Backoff(attempts=6, initial=0.1, factor=2, maximum=0.5), sleep=pauses.append)
    assert result == 5
    assert pauses == [0.1, 0.2, 0.4, 0.5]


def test_retries_are_bounded_by_attempts() -> None:
    pauses: list[float] = []
    flaky = Flaky(100, http_error(503))
    with pytest.raises(requests.HTTPError):
        call_with_retry(flaky, Backoff(attempts=3, initial=0.01), sleep=pauses.append)
    assert flaky.calls == 3
    assert len(pauses) == 2


def test_retries_are_bounded_by_the_deadline() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    flaky = Flaky(100, ConnectionRefusedError("refused"))
    with pytest.raises(ConnectionRefusedError):
        backoff = Backoff(attempts=100, initial=1, factor=1, deadline=5)
        call_with_retry(flaky, backoff, sleep=sleep, clock=lambda: now[0])
    assert flaky.calls == 6  # at 0, 1, 2, 3, 4, 5 seconds; the next pause would cross the deadline
    assert now[0] == 5


def test_permanent_fault_is_raised_at_once() -> None:
    pauses: list[float] = []
    flaky = Flaky(1, pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        call_with_retry(flaky, sleep=pauses.append)
    assert flaky.calls == 1
    assert pauses == []


def test_a_real_refused_connection_is_retried_until_it_gives_up() -> None:
    attempts: list[int] = []

    def connect() -> None:
        attempts.append(1)
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port=1, connection_attempts=1))

    with pytest.raises(pika.exceptions.AMQPConnectionError):
        call_with_retry(connect, Backoff(attempts=3, initial=0.01))
    assert len(attempts) == 3
