"""Declarations over AMQP (pika): exchanges, queues, bindings, deletes.

Operations run on a few connections at once: the broker handles each channel's
commands one after another, so parallel channels are what brings a fresh apply
of thousands of objects near the broker's own import speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from provisioner.broker.endpoints import Endpoints, where
from provisioner.broker.retry import DEFAULT_BACKOFF, Backoff, call_with_retry
from provisioner.errors import BrokerError
from provisioner.topology.model import Binding, Exchange, Queue

DEFAULT_WORKERS = 6


@dataclass(frozen=True)
class Operation:
    """One AMQP command about one object: declare, bind, unbind or delete."""

    verb: str
    resource: Exchange | Queue | Binding
    if_empty: bool = False

    def describe(self) -> str:
        return f"{self.verb} {self.resource.kind} {self.resource.name!r}"


class OperationFailed(BrokerError):
    """The broker refused an operation (channel error); carries how many operations were done."""

    def __init__(self, operation: Operation, reply: str, done: int) -> None:
        super().__init__(f"{operation.describe()} in vhost {operation.resource.vhost!r} refused: {reply}")
        self.operation, self.reply, self.done = operation, reply, done


def _declare(channel: BlockingChannel, operation: Operation) -> None:
    resource = operation.resource
    if isinstance(resource, Exchange):
        channel.exchange_declare(
            resource.name,
            resource.type,
            durable=resource.durable,
            auto_delete=resource.auto_delete,
            internal=resource.internal,
            arguments=resource.arguments or None,
        )
    elif isinstance(resource, Queue):
        channel.queue_declare(
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


class Amqp:
    """The AMQP side of one vhost; counts the commands it sends (the benchmark prints them)."""

    def __init__(self, endpoints: Endpoints, vhost: str, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.endpoints, self.vhost, self.backoff = endpoints, vhost, backoff
        self.operations_sent = 0
        self._count_lock = threading.Lock()

    def connect(self) -> pika.BlockingConnection:
        """A connection to the vhost, retried on transient faults; one clear error otherwise."""
        parameters = self.endpoints.amqp_parameters(self.vhost)
        place, user = where(self.endpoints.amqp_url), self.endpoints.amqp_user
        try:
            return call_with_retry(lambda: pika.BlockingConnection(parameters), self.backoff, describe="AMQP connect")
        except pika.exceptions.ProbableAuthenticationError:
            raise BrokerError(f"AMQP at {place} refused the credentials of user {user!r}") from None
        except pika.exceptions.ProbableAccessDeniedError:
            raise BrokerError(f"user {user!r} has no access to vhost {self.vhost!r} at {place}") from None
        except pika.exceptions.AMQPError as error:
            raise BrokerError(f"cannot connect to AMQP at {place} ({type(error).__name__})") from None
        except OSError as error:
            raise BrokerError(f"cannot connect to AMQP at {place} ({error.strerror or type(error).__name__})") from None

    def execute(
        self,
        operations: Sequence[Operation],
        workers: int = DEFAULT_WORKERS,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Run operations on up to ``workers`` connections; stop at the first refusal.

        The operations of one call must not depend on each other (the caller
        runs one phase at a time: exchanges, then queues, then bindings).
        Returns how many were done; raises OperationFailed with that count.
        """
        if not operations:
            return 0
        lanes = [list(operations[i::workers]) for i in range(min(workers, len(operations)))]
        done = [0]
        failure: list[BaseException] = []
        stop = threading.Event()

        def lane(items: list[Operation]) -> None:
            try:
                self._run_lane(items, done, stop, progress)
            except BaseException as error:  # handed to the calling thread below
                failure.append(error)
                stop.set()

        threads = [threading.Thread(target=lane, args=(items,), daemon=True) for items in lanes[1:]]
        for thread in threads:
            thread.start()
        lane(lanes[0])
        for thread in threads:
            thread.join()
        if failure:
            error = failure[0]
            if isinstance(error, OperationFailed):
                raise OperationFailed(error.operation, error.reply, done[0]) from None
            raise error
        return done[0]

    def _run_lane(
        self,
        items: list[Operation],
        done: list[int],
        stop: threading.Event,
        progress: Callable[[int], None] | None,
    ) -> None:
        connection = self.connect()
        channel = connection.channel()
        try:
            for operation in items:
                if stop.is_set():
                    return
                connection, channel = self._one(connection, channel, operation, done[0])
                with self._count_lock:
                    done[0] += 1
                    self.operations_sent += 1
                if progress is not None:
                    progress(1)
        finally:
            close_quietly(connection)

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
        except pika.exceptions.ChannelClosedByBroker as error:
            raise OperationFailed(operation, f"{error.reply_code} {error.reply_text}", done) from None
        except pika.exceptions.AMQPError as error:
            raise OperationFailed(operation, f"connection lost ({type(error).__name__})", done) from None
        return state[0], state[1]

    def queue_counts(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Exact (messages, consumers) of queues by passive declares on one connection; absent queues left out.

        Reading counts this way changes nothing on the broker (and is not counted as an operation).
        """
        if not names:
            return {}
        counts: dict[str, tuple[int, int]] = {}
        connection = self.connect()
        try:
            channel = connection.channel()
            for name in names:
                try:
                    ok = channel.queue_declare(name, passive=True)
                except pika.exceptions.ChannelClosedByBroker as error:
                    if error.reply_code != 404:
                        raise BrokerError(f"reading queue {name!r}: {error.reply_code} {error.reply_text}") from None
                    channel = connection.channel()
                    continue
                counts[name] = (ok.method.message_count, ok.method.consumer_count)
            return counts
        finally:
            close_quietly(connection)


def close_quietly(connection: pika.BlockingConnection) -> None:
    """Close a connection whose work is done; a connection already lost has nothing left to lose."""
    try:
        if connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError:
        pass
