"""Declarations over AMQP (pika): exchanges, queues, bindings, deletes.

Operations run on a few connections at once: the broker handles each channel's
commands one after another, so parallel channels are what brings a fresh apply
of thousands of objects near the broker's own import speed. On each channel,
declarations and bindings are pipelined: a batch goes out with no-wait and one
synchronous command at its end, so a round trip is paid per batch, not per object.
Connections are opened (node by node, retried) in connect.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provisioner.broker.connect import (
    ConnectFailed,
    check_login,
    close_quietly,
    drop_socket,
    node_parameters,
    open_connection,
)
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.lazy import LazyModule
from provisioner.broker.passive import pipelined_counts
from provisioner.broker.retry import DEFAULT_BACKOFF, Backoff, call_with_retry
from provisioner.broker.words import broker_words
from provisioner.errors import BrokerError
from provisioner.topology.model import Binding, Exchange, Queue

if TYPE_CHECKING:
    import pika
    import pika.exceptions
    from pika.adapters.blocking_connection import BlockingChannel
else:  # imported on first use: plan and validate never need it
    pika = LazyModule("pika", "exceptions")

__all__ = [  # connecting lives in connect.py; its names stay importable from here for the modules that use both
    "BATCH",
    "NOWAIT",
    "VERBS",
    "Amqp",
    "ConnectFailed",
    "Operation",
    "OperationFailed",
    "check_login",
    "close_quietly",
    "count_queue",
    "count_queues",
    "drop_socket",
    "node_parameters",
    "open_connection",
]


@dataclass(frozen=True)
class Operation:
    """One AMQP command about one object: declare, bind, unbind or delete."""

    verb: str
    resource: Exchange | Queue | Binding
    if_empty: bool = False

    def describe(self) -> str:
        return f"{self.verb} {self.resource.kind} {self.resource.name!r}"


def _lost(error: BaseException) -> str:
    """Why a command did not reach the broker, in words (a client-side refusal is no lost connection)."""
    if isinstance(error, pika.exceptions.ShortStringTooLong):
        return "a name or routing key is longer than the 255 bytes AMQP carries; the command was not sent"
    return f"connection lost ({type(error).__name__})"


class OperationFailed(BrokerError):
    """The broker refused an operation (channel error); carries how many operations were done."""

    def __init__(self, operation: Operation, reply: str, done: int) -> None:
        super().__init__(f"{operation.describe()} in vhost {operation.resource.vhost!r} refused: {reply}")
        self.operation, self.reply, self.done = operation, reply, done


def _declare(channel: BlockingChannel, operation: Operation) -> None:
    _declare_on(channel, operation)


def _declare_on(target: Any, operation: Operation) -> None:
    """Declare on a blocking channel, or on its underlying channel (no callback: AMQP's no-wait bit)."""
    resource = operation.resource
    if isinstance(resource, Exchange):
        target.exchange_declare(
            resource.name,
            resource.type,
            durable=resource.durable,
            auto_delete=resource.auto_delete,
            internal=resource.internal,
            arguments=resource.arguments or None,
        )
    elif isinstance(resource, Queue):
        target.queue_declare(
            resource.name,
            durable=resource.durable,
            auto_delete=resource.auto_delete,
            arguments=resource.declare_arguments or None,
        )


def _bind(channel: BlockingChannel, operation: Operation) -> None:
    _binding_command(channel.queue_bind, channel.exchange_bind, operation)


def _unbind(channel: BlockingChannel, operation: Operation) -> None:
    _binding_command(channel.queue_unbind, channel.exchange_unbind, operation)


def _binding_command(to_queue: Callable[..., object], to_exchange: Callable[..., object], operation: Operation) -> None:
    binding = operation.resource
    assert isinstance(binding, Binding)
    command = to_queue if binding.destination_type == "queue" else to_exchange
    command(binding.destination, binding.source, binding.routing_key, binding.arguments or None)


def _delete(channel: BlockingChannel, operation: Operation) -> None:
    resource = operation.resource
    if isinstance(resource, Exchange):
        channel.exchange_delete(resource.name)
    elif isinstance(resource, Queue):
        channel.queue_delete(resource.name, if_empty=operation.if_empty)


VERBS: dict[str, Callable[[BlockingChannel, Operation], None]] = {
    "declare": _declare,
    "bind": _bind,
    "unbind": _unbind,
    "delete": _delete,
}

# Commands sent per synchronising call: enough to hide the round trips, small enough that a refused
# batch is cheap to run again one by one.
BATCH = 200


def _declare_nowait(channel: BlockingChannel, operation: Operation) -> None:
    """Declare without waiting for the broker's answer (pika's BlockingChannel has no no-wait form)."""
    _declare_on(channel._impl, operation)


def _bind_nowait(channel: BlockingChannel, operation: Operation) -> None:
    binding, impl = operation.resource, channel._impl
    assert isinstance(binding, Binding)
    if binding.destination_type == "queue":
        impl.queue_bind(binding.destination, binding.source, binding.routing_key, binding.arguments or None)
    else:
        impl.exchange_bind(binding.destination, binding.source, binding.routing_key, binding.arguments or None)


# Verbs with a no-wait form (queue.unbind has none in AMQP 0-9-1; deletes stay one at a time, they are few).
NOWAIT: dict[str, Callable[[BlockingChannel, Operation], None]] = {
    "declare": _declare_nowait,
    "bind": _bind_nowait,
}


class _Batches:
    """The batches of one phase, handed out to whichever lane asks next."""

    def __init__(self, batches: list[list[Operation]]) -> None:
        self._batches, self._next, self._lock = batches, 0, threading.Lock()

    def take(self) -> list[Operation] | None:
        with self._lock:
            if self._next == len(self._batches):
                return None
            self._next += 1
            return self._batches[self._next - 1]

    def left(self) -> bool:
        with self._lock:
            return self._next < len(self._batches)


class Amqp:
    """The AMQP side of one vhost; counts the commands it sends (the benchmark prints them)."""

    def __init__(self, endpoints: Endpoints, vhost: str, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.endpoints, self.vhost, self.backoff = endpoints, vhost, backoff
        self.operations_sent = 0
        self._count_lock = threading.Lock()

    def connect(self) -> pika.BlockingConnection:
        """A connection to the vhost, retried on transient faults; one clear error otherwise."""
        return open_connection(self.endpoints.amqp_parameters(self.vhost), self.backoff)

    def execute(
        self,
        operations: Sequence[Operation],
        workers: int,  # parallel connections: the caller decides (options.DEFAULT_WORKERS for an apply)
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Run operations on up to ``workers`` connections; stop at the first refusal.

        The operations of one call must not depend on each other (the caller
        runs one phase at a time: exchanges, then queues, then bindings).
        Lanes take batches from one shared list, so a lane whose connection the
        broker refuses (a vhost or user connection limit below ``workers``)
        leaves its work to the lanes that did connect; only when none connects
        is the refusal the apply's error. Returns how many were done; raises
        OperationFailed with that count.
        """
        if not operations:
            return 0
        batches = [list(operations[start : start + BATCH]) for start in range(0, len(operations), BATCH)]
        work = _Batches(batches)
        done = [0]
        failure: list[BaseException] = []
        refused: list[BaseException] = []
        stop = threading.Event()

        def lane() -> None:
            try:
                connection = self.connect()
            except BaseException as error:  # another lane may still do the work
                refused.append(error)
                return
            try:
                self._run_lane(connection, work, done, stop, progress)
            except BaseException as error:  # handed to the calling thread below
                failure.append(error)
                stop.set()

        threads = [threading.Thread(target=lane, daemon=True) for _ in range(min(workers, len(batches)) - 1)]
        for thread in threads:
            thread.start()
        lane()
        for thread in threads:
            thread.join()
        if failure:
            error = failure[0]
            if isinstance(error, OperationFailed):
                raise OperationFailed(error.operation, error.reply, done[0]) from error
            raise error
        if work.left() and refused:  # no lane connected (or every one that did had finished first)
            raise refused[0]
        return done[0]

    def _run_lane(
        self,
        connection: pika.BlockingConnection,
        work: _Batches,
        done: list[int],
        stop: threading.Event,
        progress: Callable[[int], None] | None,
    ) -> None:
        channel = connection.channel()
        try:
            while not stop.is_set():
                batch = work.take()
                if batch is None:
                    return
                connection, channel = self._batch(connection, channel, batch, done)
                if progress is not None:
                    progress(len(batch))
        finally:
            close_quietly(connection)

    def _count(self, done: list[int], count: int) -> None:
        with self._count_lock:
            done[0] += count
            self.operations_sent += count

    def _batch(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, batch: list[Operation], done: list[int]
    ) -> tuple[pika.BlockingConnection, BlockingChannel]:
        """Run a batch pipelined: every command but the last with no-wait, the last one waited for.

        The broker runs a channel's commands in order, so the last one's reply
        says every earlier one is done; a refused no-wait command closes the
        channel instead, and the batch runs again one by one (every command is
        idempotent) to name the command and the broker's words.
        """
        if len(batch) == 1 or any(operation.verb not in NOWAIT for operation in batch):
            return self._one_by_one(connection, channel, batch, done)
        state: list = [connection, channel]

        def attempt() -> None:
            if not state[0].is_open:
                state[0] = self.connect()
                state[1] = state[0].channel()
            if not state[1].is_open:
                state[1] = state[0].channel()
            for operation in batch[:-1]:
                NOWAIT[operation.verb](state[1], operation)
            VERBS[batch[-1].verb](state[1], batch[-1])

        try:
            call_with_retry(attempt, self.backoff, describe=f"{len(batch)} pipelined commands")
        except (
            pika.exceptions.ChannelClosed,
            pika.exceptions.ChannelWrongStateError,
            pika.exceptions.ConnectionClosedByBroker,  # a refusal that closes the connection (a denied feature)
        ):
            return self._one_by_one(state[0], state[1], batch, done)
        except pika.exceptions.AMQPError as error:
            raise OperationFailed(batch[0], _lost(error), done[0]) from error
        self._count(done, len(batch))
        return state[0], state[1]

    def _one_by_one(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, batch: list[Operation], done: list[int]
    ) -> tuple[pika.BlockingConnection, BlockingChannel]:
        for operation in batch:
            connection, channel = self._one(connection, channel, operation, done[0])
            self._count(done, 1)
        return connection, channel

    def _one(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, operation: Operation, done: int
    ) -> tuple[pika.BlockingConnection, BlockingChannel]:
        """Run one operation; a lost connection is reopened and the (idempotent) command sent again."""
        state: list = [connection, channel]

        def attempt() -> None:
            if not state[0].is_open:
                state[0] = self.connect()
                state[1] = state[0].channel()
            if not state[1].is_open:
                state[1] = state[0].channel()
            VERBS[operation.verb](state[1], operation)

        try:
            call_with_retry(attempt, self.backoff, describe=operation.describe())
        except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as error:
            # A refusal (406, 403, 404, 503, 541...) is permanent: its words, at once.
            raise OperationFailed(operation, f"{error.reply_code} {broker_words(error.reply_text)}", done) from error
        except pika.exceptions.AMQPError as error:
            raise OperationFailed(operation, _lost(error), done) from error
        return state[0], state[1]

    def queue_counts(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Exact (messages, consumers) of queues by passive declares on one connection; absent queues left out.

        Reading counts this way changes nothing on the broker (and is not counted as an operation).
        """
        if not names:
            return {}
        connection = self.connect()
        try:
            return {name: found for name, found in count_queues(connection, names) if found is not None}
        finally:
            close_quietly(connection)


def count_queues(
    connection: pika.BlockingConnection, names: Sequence[str]
) -> Iterator[tuple[str, tuple[int, int] | None]]:
    """Each name with its exact (ready messages, consumers), None when missing, in the order of ``names``.

    The declares go out pipelined (passive.py); a name whose 404 text would pass
    255 bytes (see count_queue) is counted alone, in its place, as is any name the
    lanes did not reach. So the first refusal in the order of ``names`` is the one
    raised, as a BrokerError with the broker's words, as counting one by one did;
    a lost connection raises as pika raised it.
    """
    vhost = connection._impl.params.virtual_host
    answers = pipelined_counts(connection, [name for name in names if not not_found_overflows(name, vhost)])
    channel: BlockingChannel | None = None
    for name in names:
        found = answers.get(name, _UNASKED)
        if found is _UNASKED:
            if channel is None or not channel.is_open:
                channel = connection.channel()  # the first one alone, or a 404 closed the last
            try:
                found = count_queue(channel, name)
            except pika.exceptions.ChannelClosedByBroker as error:
                found = error
        if isinstance(found, pika.exceptions.ChannelClosedByBroker):
            raise BrokerError(f"reading queue {name!r}: {found.reply_code} {broker_words(found.reply_text)}") from found
        yield name, found
    if channel is not None and channel.is_open:
        channel.close()


_UNASKED: Any = object()  # a name the pipelined count left to count_queue


def count_queue(
    channel: BlockingChannel, name: str, exists: Callable[[], bool] | None = None
) -> tuple[int, int] | None:
    """Exact (ready messages, consumers) of a queue by passive declare; None when it does not exist.

    The one place a queue is counted alone (the management API's figures lag;
    passive.py counts many at once). A 404 closes the channel; any other refusal
    is raised as pika raised it. Where the
    broker's 404 text would pass 255 bytes (a long queue or vhost name), RabbitMQ
    4.0 cannot send it and closes the whole connection (541): ``exists`` (the
    management API) is asked first there.
    """
    vhost = channel.connection._impl.params.virtual_host
    if exists is not None and not_found_overflows(name, vhost) and not exists():
        return None
    try:
        ok = channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == 404:
            return None
        raise
    return ok.method.message_count, ok.method.consumer_count


def not_found_overflows(queue: str, vhost: str) -> bool:
    """Whether the broker's "no queue" reply for ``queue`` would pass AMQP's 255-byte short string."""
    text = f"NOT_FOUND - no queue '{queue}' in vhost '{vhost}'"
    return len(text.encode("utf-8")) > 255
