"""One apply at a time per vhost, with the lock held by the broker itself.

The lock is an exclusive queue, :data:`LOCK_QUEUE`, declared on a connection of
its own. The broker deletes an exclusive queue when its connection closes, so a
crashed or killed apply never leaves a stale lock. A second declarer gets
RESOURCE_LOCKED (405); it polls with backoff until ``timeout`` and then raises
:class:`LockTimeout` naming the holder.

Who holds it is written twice: in the queue's argument :data:`HOLDER_ARGUMENT`
(readable at once through the management API) and in the connection's
``connection_name`` (what the management UI shows for the connection).

Plan and prune must treat :data:`LOCK_QUEUE` as invisible: see :func:`is_lock_queue`.
"""

from __future__ import annotations

import copy
import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING

from provisioner.broker.amqp import close_quietly, drop_socket, open_connection
from provisioner.broker.lazy import LazyModule
from provisioner.broker.management import Management
from provisioner.broker.retry import DEFAULT_BACKOFF, Backoff
from provisioner.broker.words import broker_words
from provisioner.errors import BrokerError, LockTimeout
from provisioner.topology.model import LOCK_QUEUE

if TYPE_CHECKING:
    import pika
    import pika.exceptions
else:  # imported on first use: plan and validate never need it
    pika = LazyModule("pika", "exceptions")

HOLDER_ARGUMENT = "x-provisioner-holder"
RESOURCE_LOCKED = 405

HolderLookup = Callable[[str], "str | None"]  # vhost -> who holds its lock, when it can be told

log = logging.getLogger(__name__)


def is_lock_queue(name: str) -> bool:
    """Whether a live queue is the apply lock: never drift, never pruned, never shown."""
    return name == LOCK_QUEUE


def holder_description(action: str = "apply") -> str:
    """Who is asking, where and since when, e.g. ``provision apply by ana@ci-7 pid 4242 since 2024-...``."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"provision {action} by {user}@{socket.gethostname()} pid {os.getpid()} since {since}"


def management_holder_lookup(management: Management) -> HolderLookup:
    """A lookup that reads the lock's holder through the management API (never raises).

    Pass a client without retries (``NO_RETRY``): a waiting apply asks again anyway.
    """

    def lookup(vhost: str) -> str | None:
        try:
            queue = management.queue(vhost, LOCK_QUEUE)
            if queue is None:
                return None
            holder = (queue.get("arguments") or {}).get(HOLDER_ARGUMENT)
            owner = queue.get("owner_pid_details") or {}
            peer = owner.get("name") if isinstance(owner, dict) else None
            if holder is None and peer:
                # Stats arrive a few seconds late; the connection's name is the fallback.
                connection = management.connection(peer)
                if connection is not None:
                    holder = (connection.get("client_properties") or {}).get("connection_name")
            if holder and peer:
                return f"{holder} (connection {peer})"
            return holder or (f"connection {peer}" if peer else None)
        except (BrokerError, ValueError):
            return None

    return lookup


class VhostLock:
    """The apply lock of one vhost; use as a context manager around the whole apply."""

    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        timeout: float,
        *,
        holder: str | None = None,
        lookup: HolderLookup | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        poll_initial: float = 0.1,
        poll_maximum: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vhost = parameters.virtual_host
        self.timeout = timeout
        self.holder = holder or holder_description()
        self.lookup = lookup
        self.backoff = backoff  # for opening the lock's connection (--retry-seconds)
        self.poll_initial, self.poll_maximum = poll_initial, poll_maximum
        self.sleep, self.clock = sleep, clock
        self.parameters = self._lock_parameters(parameters)
        self.waited = 0.0  # seconds the last acquire waited for another holder
        self._connection: pika.BlockingConnection | None = None
        self._released = threading.Event()
        self._watch: threading.Thread | None = None

    def _lock_parameters(self, parameters: pika.ConnectionParameters) -> pika.ConnectionParameters:
        """The caller's parameters, named after the holder, without heartbeats, with TCP keepalive.

        The lock connection sits idle for the whole apply and a blocking pika
        connection only heartbeats when it is used, so heartbeats would make the
        broker drop the lock mid-apply; a dead process closes its socket anyway.
        """
        result = copy.copy(parameters)
        result.client_properties = {**(parameters.client_properties or {}), "connection_name": self.holder}
        result.heartbeat = 0
        result.tcp_options = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
        return result

    @property
    def held(self) -> bool:
        """Whether this process still holds the lock (its connection is open)."""
        return self._connection is not None and self._connection.is_open

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for another holder; LockTimeout after that."""
        started = self.clock()
        connection = open_connection(self.parameters, self.backoff, describe="lock connection")
        delay = self.poll_initial
        try:
            while not self._try_declare(connection):
                remaining = started + self.timeout - self.clock()
                if remaining <= 0:
                    raise self._timeout_error()
                self.sleep(min(delay, remaining))
                delay = min(delay * 2, self.poll_maximum)
        except BaseException:
            close_quietly(connection)
            raise
        self.waited = self.clock() - started
        self._connection = connection
        log.info("locked vhost %r as %s", self.vhost, self.holder)
        if getattr(self.parameters, "endpoints", None) is not None and self.parameters.endpoints.nodes > 1:
            self._released.clear()
            self._watch = threading.Thread(target=self._keep, name=f"lock {self.vhost}", daemon=True)
            self._watch.start()

    def _keep(self) -> None:
        """With several nodes: when the lock's node dies (and the broker drops the lock with it), take it again.

        Only this thread touches the lock's connection while it runs; release() waits for it.
        """
        while not self._released.is_set():
            connection = self._connection
            try:
                assert connection is not None
                connection.process_data_events(time_limit=0.5)
                continue
            except (pika.exceptions.AMQPError, OSError, AssertionError):
                pass
            if self._released.is_set():
                return
            self._take_again()

    def _take_again(self) -> None:
        """Take the lock through another node; say so only when another apply holds it meanwhile."""
        warned = False
        while not self._released.is_set():
            try:
                connection = open_connection(self.parameters, self.backoff, describe="lock connection")
                if self._try_declare(connection):
                    self._connection = connection
                    log.info("took the lock of vhost %r again after its node was lost", self.vhost)
                    return
                close_quietly(connection)
                holder = self.lookup(self.vhost) if self.lookup else None
                if holder is not None and self.holder in holder:
                    # Our own lock, still listed on the dead node until the cluster cleans it up.
                    log.info("the lock of vhost %r is still our old one on the lost node; waiting", self.vhost)
                elif not warned:
                    log.warning(
                        "warning: the apply lock of vhost %r was lost with its node and %s holds it now; "
                        "this apply goes on and takes the lock again when it is free",
                        self.vhost,
                        holder or "another apply",
                    )
                    warned = True
            except (BrokerError, pika.exceptions.AMQPError, OSError) as error:
                log.info("cannot take the lock of vhost %r again yet: %s", self.vhost, error)
            self._released.wait(self.poll_maximum)

    def _try_declare(self, connection: pika.BlockingConnection) -> bool:
        """Declare the exclusive lock queue; False when another connection holds it."""
        channel = connection.channel()
        try:
            arguments = {HOLDER_ARGUMENT: self.holder}
            channel.queue_declare(LOCK_QUEUE, exclusive=True, auto_delete=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == RESOURCE_LOCKED:
                return False
            raise BrokerError(
                f"cannot take the apply lock of vhost {self.vhost!r}: "
                f"{error.reply_code} {broker_words(error.reply_text)}"
            ) from error
        channel.close()
        return True

    def _timeout_error(self) -> LockTimeout:
        holder = self.lookup(self.vhost) if self.lookup else None
        return LockTimeout(
            f"vhost {self.vhost!r} is locked by {holder or 'another apply (holder unknown)'}; "
            f"gave up after {self.timeout:g}s (--lock-timeout)"
        )

    def release(self, abort: bool = False) -> None:
        """Give the lock back: closing the connection deletes the exclusive queue.

        ``abort``: drop the socket instead of waiting for the broker's goodbye (a
        node that stopped answering never gives one; it deletes the queue when the
        connection's end reaches it).
        """
        self._released.set()
        if self._watch is not None:
            self._watch.join()
            self._watch = None
        connection, self._connection = self._connection, None
        if connection is not None:
            (drop_socket if abort else close_quietly)(connection)

    def __enter__(self) -> VhostLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release(abort=error is not None)  # an apply that failed may have failed on a broker that hangs
