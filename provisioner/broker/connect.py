"""Opening AMQP connections (pika): node by node over a cluster's endpoints, retried, failures in one line."""

from __future__ import annotations

import copy
import functools
import re
import socket
import ssl
from typing import TYPE_CHECKING

from provisioner.broker.endpoints import Endpoints, netloc
from provisioner.broker.lazy import LazyModule
from provisioner.broker.management import name_not_resolved
from provisioner.broker.retry import DEFAULT_BACKOFF, Backoff, call_with_retry, is_transient
from provisioner.broker.words import broker_words
from provisioner.errors import BrokerError

if TYPE_CHECKING:
    import pika
    import pika.exceptions
else:  # imported on first use: plan and validate never need it
    pika = LazyModule("pika", "exceptions")


class ConnectFailed(BrokerError):
    """An AMQP connection could not be opened; the message names host, port, user and vhost, never a password."""


def _broker_words(error: BaseException) -> str:
    """The reply code and text a broker closed a connection with, as pika wraps them into a string."""
    found = re.search(r"\((\d{3})\) (['\"])(.*?)\2", str(error))
    return f"{found.group(1)} {found.group(3)}" if found else ""


def _translate_connect(error: Exception, parameters: pika.ConnectionParameters) -> BrokerError:
    """One clear line for a failed AMQP connection: what failed, where, and the broker's words."""
    place = netloc(parameters.host, parameters.port)
    user, vhost = getattr(parameters.credentials, "username", "?"), parameters.virtual_host
    words = _broker_words(error)
    unresolved = name_not_resolved(error)
    if unresolved is not None:
        return ConnectFailed(f"the AMQP host name {parameters.host!r} does not resolve ({unresolved.strerror})")
    if isinstance(error, (pika.exceptions.AuthenticationError, pika.exceptions.ProbableAuthenticationError)):
        return ConnectFailed(f"AMQP at {place} refused the credentials of user {user!r} ({words or 'login refused'})")
    if isinstance(error, pika.exceptions.ProbableAccessDeniedError):
        return ConnectFailed(f"user {user!r} may not open vhost {vhost!r} at {place} ({words or 'access refused'})")
    if isinstance(error, ssl.SSLError):
        reason = re.sub(r"^\[[A-Z_: ]+\] | \(_ssl\.c:\d+\)$", "", error.strerror or str(error))
        return ConnectFailed(f"TLS handshake with AMQP at {place} failed: {reason} (see --ca-file)")
    if isinstance(error, pika.exceptions.IncompatibleProtocolError):
        return ConnectFailed(f"{place} does not speak AMQP 0-9-1 (the management port? amqps:// on a plain port?)")
    if isinstance(error, pika.exceptions.ConnectionClosedByBroker):
        return ConnectFailed(
            f"AMQP at {place} closed the connection: {error.reply_code} {broker_words(error.reply_text)}"
        )
    cause = error.args[0] if isinstance(error, pika.exceptions.AMQPConnectionError) and error.args else error
    cause = getattr(cause, "exception", None) or cause  # pika's connector errors wrap the socket's
    detail = getattr(cause, "strerror", None) or words or type(cause).__name__
    return ConnectFailed(f"cannot connect to AMQP at {place} ({detail})")


@functools.cache
def _node_parameters_class() -> type[pika.URLParameters]:
    """pika's URL parameters with room for where they came from (made on first use, as pika is needed)."""

    class NodeParameters(pika.URLParameters):
        """One node's connection parameters that remember their endpoints, so a connection can move."""

        endpoints: Endpoints | None = None
        node: int = 0
        vhost: str = "/"

    return NodeParameters


def node_parameters(url: str, endpoints: Endpoints, node: int, vhost: str) -> pika.URLParameters:
    """Parameters of one node of ``endpoints``: open_connection moves them to another node when it stops."""
    parameters = _node_parameters_class()(url)
    parameters.endpoints, parameters.node, parameters.vhost = endpoints, node, vhost  # type: ignore[attr-defined]
    return parameters


def _on_node(parameters: pika.ConnectionParameters, endpoints: Endpoints, node: int) -> pika.ConnectionParameters:
    """``parameters`` (the lock's name and keepalive, say) pointed at another node of the same endpoints."""
    there = endpoints.amqp_parameters(getattr(parameters, "vhost", parameters.virtual_host), node)
    moved = copy.copy(parameters)
    moved.host, moved.port, moved.credentials, moved.ssl_options = (
        there.host,
        there.port,
        there.credentials,
        there.ssl_options,
    )
    if getattr(moved, "endpoints", None) is not None:
        moved.node = node
    return moved


def connect_any(
    parameters: pika.ConnectionParameters, tried: list[pika.ConnectionParameters]
) -> pika.BlockingConnection:
    """A connection to the current node of the parameters' endpoints or, when it does not answer, the next that does.

    A refusal (credentials, vhost access) is the same on every node: raised at
    once. ``tried`` collects the parameters tried, for the error message.
    """
    endpoints = getattr(parameters, "endpoints", None)
    if endpoints is None or endpoints.nodes == 1:
        tried.append(parameters)
        return pika.BlockingConnection(parameters)
    first: BaseException | None = None
    for node in endpoints.node_order():
        candidate = _on_node(parameters, endpoints, node)
        tried.append(candidate)
        try:
            connection = pika.BlockingConnection(candidate)
        except (pika.exceptions.AMQPError, OSError) as error:
            if not is_transient(error):
                raise
            first = first or error
            continue
        endpoints.settle(node, first)
        return connection
    assert first is not None
    raise first


def open_connection(
    parameters: pika.ConnectionParameters, backoff: Backoff = DEFAULT_BACKOFF, describe: str = "AMQP connect"
) -> pika.BlockingConnection:
    """A blocking connection (to another node of the list when one stops), retried on transient faults.

    ConnectFailed in one line when no node answers within the backoff.
    """
    tried: list[pika.ConnectionParameters] = []
    try:
        return call_with_retry(lambda: connect_any(parameters, tried), backoff, describe=describe)
    except (pika.exceptions.AMQPError, OSError) as error:
        translated = _translate_connect(error, tried[-1] if tried else parameters)
        raise (_every_node(translated, parameters) if is_transient(error) else translated) from None


def _every_node(error: BrokerError, parameters: pika.ConnectionParameters) -> BrokerError:
    """The error, saying that no node of a list answered when there were several."""
    endpoints = getattr(parameters, "endpoints", None)
    if endpoints is None or endpoints.nodes == 1:
        return error
    return ConnectFailed(f"{error} (and no other of the {endpoints.nodes} nodes answered)")


def check_login(parameters: pika.ConnectionParameters, backoff: Backoff, vhost_exists: bool = True) -> bool:
    """Open and close one connection, writing nothing: the credentials (and the vhost's access) work.

    For a vhost apply is about to create, the broker's "vhost not found" comes
    after the login, so it proves the credentials right. Returns whether the vhost opened.
    """
    tried: list[pika.ConnectionParameters] = []
    try:
        connection = call_with_retry(lambda: connect_any(parameters, tried), backoff, describe="AMQP login")
    except pika.exceptions.ProbableAccessDeniedError as error:
        if vhost_exists:
            raise _translate_connect(error, parameters) from None
        return False
    except (pika.exceptions.AMQPError, OSError) as error:
        raise _translate_connect(error, parameters) from None
    close_quietly(connection)
    return True


def drop_socket(connection: pika.BlockingConnection) -> None:
    """End a connection without waiting for the broker (one that stopped answering never answers)."""
    sock = getattr(getattr(connection._impl, "_transport", None), "_sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
    except OSError:
        pass


def close_quietly(connection: pika.BlockingConnection) -> None:
    """Close a connection whose work is done; a connection already lost has nothing left to lose."""
    try:
        if connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError:
        pass
