"""Retry transient broker faults with exponential backoff and a bound; never retry permanent ones.

Transient: the network dropped or refused (the node is restarting), the broker
forced the connection closed (320), a management API 5xx or 429, a publish the
broker nacked (a quorum queue without a leader for a moment, after a node died). Permanent:
authentication and permissions (401, 403, ACCESS_REFUSED), PRECONDITION_FAILED,
NOT_FOUND, RESOURCE_LOCKED, every other 4xx, every other refusal the broker
closes a channel or connection with (541 INTERNAL_ERROR is how RabbitMQ 4 refuses
a deprecated feature), a TLS handshake that fails and a host name that does not
resolve: retrying only repeats them.

A wrapped error (``raise BrokerError(...) from cause``) is judged by its causes,
so clients may translate errors to ``BrokerError`` and still be retried here.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import requests

T = TypeVar("T")

log = logging.getLogger(__name__)

# AMQP reply codes that say "try again later" rather than "you asked for the wrong thing".
TRANSIENT_REPLY_CODES = frozenset({320})  # CONNECTION_FORCED: the node is stopping
TRANSIENT_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
# Errors (pika's and requests', by class name) that say the connection itself is gone.
LOST_CONNECTION = frozenset({"AMQPConnectionError", "ChannelWrongStateError", "ConnectionError"})
PERMANENT_AMQP_ERRORS = (  # names in pika.exceptions
    "AuthenticationError",
    "ProbableAuthenticationError",
    "ProbableAccessDeniedError",
    "IncompatibleProtocolError",
    "ConnectionClosedByClient",
)


@dataclass(frozen=True)
class Backoff:
    """How often and how long to retry: delays grow by ``factor`` up to ``maximum``, all within ``deadline``."""

    attempts: int = 8
    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 4.0
    deadline: float = 45.0  # seconds: a node restart takes a few; a dead node should fail in under a minute
    # The endpoints list several nodes: a lost connection is not worth a line of its own, the
    # failover's one warning (endpoints.Failover) names the node left and the one used.
    failover: bool = False

    def delays(self) -> Iterator[float]:
        """The pause before each retry (one fewer than the attempts)."""
        delay = self.initial
        for _ in range(self.attempts - 1):
            yield min(delay, self.maximum)
            delay *= self.factor


DEFAULT_BACKOFF = Backoff()
NO_RETRY = Backoff(attempts=1)


def _judge_one(error: BaseException) -> bool | None:
    """True/False when this error alone decides, None to look at its cause."""
    verdict = getattr(error, "transient", None)
    if isinstance(verdict, bool):
        return verdict
    amqp = _judge_amqp(error)
    if amqp is not None:
        return amqp
    if type(error).__name__ == "NackError":
        return True  # a quorum queue electing a new leader (its node died) refuses for a moment; nothing was taken
    if isinstance(error, socket.gaierror):
        return error.errno == socket.EAI_AGAIN  # "temporary failure in name resolution"; else: no such host
    if isinstance(error, ssl.SSLError):
        return False  # a certificate that does not verify, TLS on a plain port: the same next time
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else 0
        return status in TRANSIENT_HTTP_STATUSES
    if isinstance(error, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return True
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True  # OSError family: reset, refused, aborted, broken pipe
    return None


def _lost_connection(error: BaseException) -> bool:
    """A connection that broke or was refused (a node died), as opposed to a slow or overloaded one."""
    for current in (error, error.__cause__):
        names = {kind.__name__ for kind in type(current).__mro__}
        if current is not None and (names & LOST_CONNECTION or isinstance(current, ConnectionError)):
            return True
    return False


def _judge_amqp(error: BaseException) -> bool | None:
    """The verdict on a pika error; None for any other (pika, never imported, raised nothing)."""
    exceptions = sys.modules.get("pika.exceptions")
    if exceptions is None:
        return None
    if isinstance(error, tuple(getattr(exceptions, name) for name in PERMANENT_AMQP_ERRORS)):
        return False
    if isinstance(error, (exceptions.ConnectionClosedByBroker, exceptions.ChannelClosedByBroker)):
        return error.reply_code in TRANSIENT_REPLY_CODES
    if isinstance(error, (exceptions.AMQPConnectionError, exceptions.ChannelWrongStateError)):
        return True  # stream lost, refused, heartbeat missed, connection gone under a channel
    return None


def is_transient(error: BaseException) -> bool:
    """Whether retrying could help: judged on the error, then on its chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        verdict = _judge_one(current)
        if verdict is not None:
            return verdict
        current = current.__cause__ or current.__context__
    return False


def call_with_retry(
    call: Callable[[], T],
    backoff: Backoff = DEFAULT_BACKOFF,
    *,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    describe: str = "broker call",
    announce: Callable[[], bool] | None = None,
) -> T:
    """Run ``call``; on a transient fault wait and run it again, within the attempts and the deadline.

    ``announce()`` says whether this retry is worth a warning line (several calls
    retrying the same fault at once print one call's lines, the others log at info).
    """
    started = clock()
    delays = backoff.delays()
    while True:
        try:
            return call()
        except Exception as error:
            delay = next(delays, None)
            if not transient(error) or delay is None or clock() - started + delay > backoff.deadline:
                raise
            quiet = (backoff.failover and _lost_connection(error)) or (announce is not None and not announce())
            level = logging.INFO if quiet else logging.WARNING
            log.log(level, "%s failed (%s: %s); retrying in %.2fs", describe, type(error).__name__, error, delay)
            sleep(delay)
