"""The broker side of a queue migration: observe two queues, declare, bind, move messages, delete.

Counts come from AMQP (a passive declare is exact; the management API's figures
lag by its statistics interval); properties and bindings come from the
management API (read from the broker's tables, not from statistics, so current).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provisioner.broker.amqp import close_quietly, count_queue, open_connection
from provisioner.broker.lazy import LazyModule
from provisioner.broker.management import Management, ManagementError
from provisioner.broker.mover import MoveSettings, bounded, drain, stall_seconds, unblocked
from provisioner.broker.pump import (
    MARKER_ROOM,
    SYNC_EVERY,
    call_and_wait,
    close_quietly_channel,
    copy_properties,
    raw_channel,
)
from provisioner.broker.retry import DEFAULT_BACKOFF, NO_RETRY, Backoff, call_with_retry
from provisioner.broker.shovel import BrokerShovel
from provisioner.broker.words import broker_words
from provisioner.errors import BrokerError, UnsafeChange
from provisioner.limits import breach, effective_limits
from provisioner.migration.parking import (
    divert_body,
    divert_policy_name,
    limiting_operator_policy,
    policy_body,
    policy_name,
    policy_problem,
    rival_policy,
)
from provisioner.migration.steps import (
    LiveQueue,
    MigrationReport,
    Observation,
    Step,
    Swap,
    is_migration_queue,
    migrate_queue,
    temporary_name,
)
from provisioner.topology.model import MIGRATE_POLICY_PREFIX, Binding, Queue

if TYPE_CHECKING:
    import pika
    import pika.exceptions
    from pika.adapters.blocking_connection import BlockingChannel
else:  # imported on first use: plan and validate never need it
    pika = LazyModule("pika", "exceptions")

SWAP_TRIES = 20  # moves and delete tries before a swap gives up: publishers never leave the queue empty

log = logging.getLogger(__name__)


class PublishersOutpace(BrokerError):
    """Publishers on the default exchange never leave the old queue empty: the swap cannot happen now."""


class PikaMigrationBroker:
    """A :class:`provisioner.migration.steps.MigrationBroker` on one pika connection to one vhost."""

    def __init__(
        self,
        connection: pika.BlockingConnection,
        vhost: str,
        management: Management,
        settings: MoveSettings | None = None,
        force: bool = False,
    ) -> None:
        self.connection, self.vhost, self.management = connection, vhost, management
        self.settings = settings or MoveSettings(None, stall_seconds(DEFAULT_BACKOFF))
        self.force = force  # moves on although the destination's limits would drop or expire messages
        self._originals: dict[str, str] = {}  # temporary queue -> its queue
        self._observed: set[str] = set()  # temporary queues this run has looked for
        self._resumed: set[str] = set()  # temporary queues found at the first look: an earlier run's migration

    def _channel(self) -> BlockingChannel:
        return self.connection.channel()

    def _counts(self, name: str) -> tuple[int, int] | None:
        """(ready messages, consumers) by passive declare, None when the queue does not exist."""
        channel = self._channel()
        found = count_queue(channel, name, exists=lambda: self.management.queue(self.vhost, name) is not None)
        if found is not None:
            channel.close()
        return found

    def _ready(self, name: str) -> int:
        counts = self._counts(name)
        return 0 if counts is None else counts[0]

    def _live(self, name: str) -> LiveQueue | None:
        info = self.management.queue(self.vhost, name)
        counts = self._counts(name)
        if info is None or counts is None:
            return None
        return LiveQueue(
            name=name,
            type=info.get("type") or "classic",
            durable=bool(info.get("durable")),
            auto_delete=bool(info.get("auto_delete")),
            exclusive=bool(info.get("exclusive")),
            arguments=dict(info.get("arguments") or {}),
            messages=counts[0],
            consumers=counts[1],
            message_bytes=int(info["message_bytes"]) if "message_bytes" in info else None,
            policy=effective_policy(info),
        )

    def _bindings(self, name: str, queue: str) -> set[Binding]:
        return {
            Binding(self.vhost, row["source"], queue, "queue", row["routing_key"], dict(row.get("arguments") or {}))
            for row in self.management.queue_bindings(self.vhost, name)
            if row.get("source")  # the default exchange's implicit binding cannot be changed
        }

    def observe(self, queue: str, temporary: str) -> Observation:
        """Both queues and the union of their bindings, all named after ``queue``."""
        self._originals[temporary] = queue
        self._undivert(queue)  # a killed swap's diversion would send the new queue's messages away
        bindings = self._bindings(queue, queue) | self._bindings(temporary, queue)
        parked = self._live(temporary)
        if temporary not in self._observed:
            self._observed.add(temporary)
            if parked is not None:
                self._resumed.add(temporary)
        if parked is not None:
            self._park(temporary, before=True)  # again on every round: ours put back, an operator policy refused
            self._park(temporary)
        return Observation(self._live(queue), parked, tuple(sorted(bindings, key=lambda binding: binding.key)))

    def probe(self, queue: Queue) -> LiveQueue:
        """Declare ``queue``, read back what the broker made of it, delete it; the broker's refusal raises."""
        self._drop(queue.name)  # a killed run may have left one behind, with other arguments
        try:
            self._declare(queue)
        except BrokerError as error:
            raise BrokerError(f"the broker refuses the new properties: {error}") from error
        kept = self._live(queue.name)
        self._drop(queue.name)
        if kept is None:
            raise BrokerError(f"queue {queue.name!r} vanished right after it was declared")
        return kept

    def _drop(self, name: str) -> None:
        channel = self._channel()
        channel.queue_delete(name)  # deleting a missing queue is not an error
        channel.close()

    def declare(self, queue: Queue) -> None:
        """Declare a queue; the temporary queue under its guarding policy, checked once declared."""
        if is_migration_queue(queue.name):
            self._park(queue.name, before=True)
        self._declare(queue)
        if is_migration_queue(queue.name):
            self._park(queue.name)

    def _declare(self, queue: Queue) -> None:
        channel = self._channel()
        try:
            channel.queue_declare(
                queue.name, durable=queue.durable, auto_delete=queue.auto_delete, arguments=queue.declare_arguments
            )
        except pika.exceptions.ChannelClosedByBroker as error:
            raise BrokerError(f"cannot declare queue {queue.name!r}: {broker_words(error.reply_text)}") from error
        except pika.exceptions.ConnectionClosedByBroker as error:  # 4.x closes the connection on a denied feature
            if error.reply_code == CONNECTION_FORCED:
                raise
            raise BrokerError(f"cannot declare queue {queue.name!r}: {_refusal(error)}") from error
        channel.close()

    def _park(self, temporary: str, before: bool = False) -> None:
        """Put our policy on the temporary queue (before declaring it), or check it is the one in force."""
        policies = self.management.policies(self.vhost)
        refusal = limiting_operator_policy(self.management.operator_policies(self.vhost), temporary)
        refusal = refusal or rival_policy(policies, temporary)
        if refusal is not None:
            raise UnsafeChange(refusal)
        if before:
            original = self.management.queue(self.vhost, self._originals.get(temporary, temporary))
            self.management.put_policy(self.vhost, policy_name(temporary), policy_body(temporary, original, policies))
            return
        if (problem := policy_problem(self.management.queue(self.vhost, temporary), temporary)) is not None:
            raise UnsafeChange(f"{problem}; nothing more was moved")

    def bind(self, binding: Binding) -> None:
        channel = self._channel()
        try:
            channel.queue_bind(binding.destination, binding.source, binding.routing_key, binding.arguments or None)
        except pika.exceptions.ChannelClosedByBroker as error:
            raise _refused("bind", binding, error) from error
        channel.close()

    def unbind(self, binding: Binding) -> None:
        channel = self._channel()
        try:
            channel.queue_unbind(binding.destination, binding.source, binding.routing_key, binding.arguments or None)
        except pika.exceptions.ChannelClosedByBroker as error:
            raise _refused("unbind", binding, error) from error
        channel.close()

    def move(self, source: str, destination: str) -> int:
        """Move every message (the shovel or the pump), each acked at the source once its copy is confirmed."""
        if not is_migration_queue(destination):
            self._no_diversion_left(destination)
        guard = None if self.force or is_migration_queue(destination) else self._limits_guard(source, destination)
        sync_every, marker_room = self._markers(source)
        settings = self.settings
        if not is_migration_queue(destination) and temporary_name(destination) in self._resumed:
            # An interrupted pump may have left an empty marker (pump.py) in either queue; the pump drops
            # markers, the broker's shovel would carry one into the queue: moving back, the pump only.
            settings = MoveSettings(None, settings.stall_seconds)
        return unblocked(
            lambda: drain(
                self.connection,
                self._ready,
                source,
                destination,
                settings,
                guard=guard,
                sync_every=sync_every,
                marker_room=marker_room,
                user=self._user(),
            ),
            self.settings.stall_seconds,
        )

    def _user(self) -> str | None:
        """The user this connection publishes as (the broker checks a message's user_id against it)."""
        return getattr(getattr(self.connection._impl.params, "credentials", None), "username", None)

    def _markers(self, source: str) -> tuple[int, Callable[[], bool] | None]:
        """How often the pump forces the source's acks to disk with a marker (pump.py), and the check of room for one.

        Only a classic queue needs it (a quorum queue's acks are in its log once
        applied), and only one that takes the marker harmlessly: no consumer of
        anyone's would see it, no TTL would dead-letter it; under a length limit
        only while :data:`MARKER_ROOM` places are free (checked before each
        marker), so a marker never pushes a message out or is refused.
        """
        info = self.management.queue(self.vhost, source) or {}
        limits = effective_limits(info.get("arguments") or {}, effective_policy(info))
        counts = self._counts(source)
        quiet = counts is not None and counts[1] == 0 and limits.ttl is None
        if not quiet or (info.get("type") or "classic") != "classic":
            return 0, None
        if limits.max_length is None:
            return SYNC_EVERY, None
        most = limits.max_length.value - MARKER_ROOM

        def room() -> bool:
            return self._ready(source) <= most

        return (SYNC_EVERY, room) if room() else (0, None)

    def _limits_guard(self, source: str, destination: str) -> Callable[[int], None]:
        """A check that the destination's limits keep every message: its own plus those still to move."""
        info = self.management.queue(self.vhost, destination) or {}
        limits = effective_limits(info.get("arguments") or {}, effective_policy(info))
        held = self.management.queue(self.vhost, source) or {}
        known = "message_bytes" in held  # not on a broker that keeps no statistics (4.x, metrics denied)
        average = int(held.get("message_bytes") or 0) // max(int(held.get("messages") or 0), 1)

        def guard(waiting: int) -> None:
            count = self._ready(destination) + waiting
            reason = breach(destination, limits, count, count * average if known else None)
            if reason is not None:
                raise UnsafeChange(f"{reason}: stopped before moving them (--force moves them anyway)")

        return guard

    def swap(self, step: Swap) -> bool:
        """Empty the old queue, then delete it (if still empty) and declare the new one in the same breath.

        Publishers that address the queue by name (the default exchange) keep
        adding to it. For classic queues a policy diverts what they send to the
        temporary queue meanwhile (length 0, reject-publish-dlx: a publisher
        with confirms gets a nack for a message that is kept), so the old queue
        stays empty. Each try moves what came (the pump) and sends delete and
        declare pipelined at once; a message that came in between makes the
        broker refuse the delete (if-empty) and the next try moves it. When
        publishers never leave it empty (a quorum queue, or arguments a policy
        cannot override), the migration stops in one line: it never waits for
        ever and never deletes a message.
        """
        if step.divert:  # from now on what arrives by name is dead-lettered to the temporary queue at once
            self.management.put_policy(
                self.vhost, divert_policy_name(step.queue.name), divert_body(step.queue.name, step.temporary)
            )
        try:
            started, moved = time.monotonic(), unblocked(lambda: self._swap_tries(step), self.settings.stall_seconds)
        finally:  # the new queue keeps it until here: what came meanwhile waits in the temporary queue
            self._undivert(step.queue.name)
        if moved is None:
            return True
        seconds = time.monotonic() - started
        raise PublishersOutpace(
            f"publishers keep sending to queue {step.queue.name!r} by its name (the default exchange: {moved} "
            f"message(s) in {seconds:.1f} s), so it is never empty long enough to be replaced; pause them for a "
            "moment (or publish through an exchange)"
        )

    def _swap_tries(self, step: Swap) -> int | None:
        """None once swapped; else how many messages the tries moved before giving up."""
        quick = MoveSettings(None, self.settings.stall_seconds)  # a few messages: the pump, no shovel to start
        moved, channel = 0, None
        for _ in range(SWAP_TRIES):
            if channel is None or not channel.is_open:
                channel = raw_channel(self.connection)  # open before the move: nothing between it and the delete
            moved += drain(self.connection, self._ready, step.queue.name, step.temporary, quick, user=self._user())
            if self._delete_and_declare(step, channel):
                return None
        return moved

    def _no_diversion_left(self, queue: str) -> None:
        """Remove a diversion still defined for ``queue`` before moving messages into it.

        Each round removes it first (observe), but a killed run's request to add
        it may reach the broker later than that: under it every copy would be
        refused and dead-lettered straight back to the temporary queue, beside
        its original (duplicates, again on every retry). One GET of the policies.
        """
        name = divert_policy_name(queue)
        if any(policy.get("name") == name for policy in self.management.policies(self.vhost)):
            log.warning("a diversion of queue %r was left in force (a killed run's?): removed", queue)
            self._undivert(queue)

    def _undivert(self, queue: str) -> None:
        self.management.delete_policy(self.vhost, divert_policy_name(queue))

    def _refuse_while_a_node_is_down(self, queue: str) -> None:
        """A quorum queue deleted by its count alone would lose what a consumer on a lost node holds.

        The broker keeps such a consumer's messages checked out until that node returns,
        and counts them nowhere a client can read (a passive declare says 0, if-empty is
        not implemented for quorum queues): while any node is down, nothing is deleted.
        """
        try:
            nodes = self.management.cluster_nodes()
        except ManagementError:  # a user without the monitoring tag cannot list nodes: as before, by the count
            return
        down = sorted(str(row.get("name")) for row in nodes if not row.get("running"))
        if down:
            raise BrokerError(
                f"quorum queue {queue!r} is not deleted while node(s) {', '.join(down)} of the cluster are down: "
                f"a consumer there may still hold some of its messages, which the broker counts nowhere; "
                f"every message is in {queue!r} or its temporary queue: run the command again once the node is back"
            )

    def _delete_and_declare(self, step: Swap, channel: Any) -> bool:
        """Delete (if empty) and declare, pipelined on one channel: the broker runs them back to back."""
        queue = step.queue
        if step.quorum:
            self._refuse_while_a_node_is_down(queue.name)
        got: list[tuple[Any, Any, bytes]] = []
        if step.quorum:  # no if-empty on a quorum queue: take the one message a publisher may just have sent
            channel.basic_get(queue.name, lambda _c, method, properties, body: got.append((method, properties, body)))
        channel.queue_delete(queue.name, if_empty=not step.quorum)  # no callback: no-wait, no round trip
        channel.queue_declare(
            queue.name, durable=queue.durable, auto_delete=queue.auto_delete, arguments=queue.declare_arguments
        )
        refused = call_and_wait(
            self.connection,
            lambda done: channel.queue_declare(queue.name, passive=True, callback=done),
            channel,
            self.settings.stall_seconds,
        )
        if refused is not None:
            if refused.startswith("406") and "not empty" in refused:
                return False  # a message came between the move and the delete: the old queue stays, try again
            raise BrokerError(f"cannot replace queue {queue.name!r}: {refused}")
        for _, properties, body in got:  # the old queue is gone: this copy is the message now
            outbound = self._channel()
            outbound.confirm_delivery()
            outbound.basic_publish("", step.temporary, body, copy_properties(properties), mandatory=True)
            outbound.close()
        close_quietly_channel(self.connection, channel)
        return True

    def delete_if_empty(self, queue: str, quorum: bool) -> bool:
        """Delete the queue if it holds no message and has no consumer; False when it does."""
        counts = self._counts(queue)
        if counts is None:
            self._unpark(queue)
            return True
        if counts != (0, 0):
            return False
        if quorum:
            self._refuse_while_a_node_is_down(queue)
        channel = self._channel()
        try:
            # Quorum queues answer if-empty with NOT_IMPLEMENTED, so for them the count above is the check.
            channel.queue_delete(queue, if_empty=not quorum)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 406:  # a message arrived since the count
                return False
            raise
        channel.close()
        self._unpark(queue)
        return True

    def _unpark(self, queue: str) -> None:
        if is_migration_queue(queue):
            self.management.delete_policy(self.vhost, policy_name(queue))


def effective_policy(info: dict[str, Any]) -> dict[str, Any]:
    """A queue's effective policy definition as the management API shows it, ours left out.

    The API shows a policy change a statistics round late: a queue may still
    show the swap's diversion (length 0) a moment after it was removed.
    """
    policy = info.get("effective_policy_definition")
    if str(info.get("policy") or "").startswith(MIGRATE_POLICY_PREFIX) or not isinstance(policy, dict):
        return {}
    return policy


def _refused(verb: str, binding: Binding, error: pika.exceptions.ChannelClosedByBroker) -> BrokerError:
    """A binding step the broker refused, as one line with the broker's words (never retried)."""
    where = "to" if verb == "bind" else "from"
    return BrokerError(
        f"migration: cannot {verb} queue {binding.destination!r} {where} exchange {binding.source!r} "
        f"(routing key {binding.routing_key!r}) in vhost {binding.vhost!r}: "
        f"{error.reply_code} {broker_words(error.reply_text)}"
    )


CONNECTION_FORCED = 320
DENIED_TRANSIENT = "transient_nonexcl_queues"  # the deprecated feature a 4.x broker may deny


def _refusal(error: pika.exceptions.ChannelClosedByBroker | pika.exceptions.ConnectionClosedByBroker) -> str:
    """The broker's refusal in one line; a denied transient queue said plainly (4.x cuts its long text)."""
    if DENIED_TRANSIENT in str(error.reply_text):
        return (
            f"the broker denies transient non-exclusive queues (deprecated feature {DENIED_TRANSIENT}), so a queue "
            "with durable: false cannot be declared on it; nothing was moved: declare the queue durable"
        )
    return f"{error.reply_code} {broker_words(error.reply_text)}"


def _lost(target: Queue, error: BaseException) -> BrokerError:
    return BrokerError(
        f"migration of queue {target.name!r} in vhost {target.vhost!r}: connection lost ({type(error).__name__}); "
        f"its messages are in "
        f"{target.name!r} or in {temporary_name(target.name)!r}: run `provision apply --migrate` again to finish"
    )


def run_migration(
    target: Queue,
    parameters: pika.ConnectionParameters,
    management: Management,
    *,
    allow_consumers: bool = False,
    force: bool | None = None,
    before_step: Callable[[Step], None] | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    shovel: bool = True,
) -> MigrationReport:
    """Migrate one queue on a connection of its own; a transient fault re-runs it from the broker's state.

    ``shovel``: move with the broker's shovel where its plugin is on. A move that
    makes no progress for the backoff's deadline (an alarm, a node that stops
    answering) stops with where the messages are.
    """
    force = allow_consumers if force is None else force
    settings = MoveSettings(BrokerShovel(management, target.vhost) if shovel else None, stall_seconds(backoff))
    parameters = bounded(parameters, settings.stall_seconds)

    def attempt() -> MigrationReport:
        connection = open_connection(parameters, NO_RETRY, describe=f"migration of queue {target.name!r}")
        try:
            broker = PikaMigrationBroker(connection, target.vhost, management, settings, force)
            return migrate_queue(target, broker, allow_consumers=allow_consumers, before_step=before_step, force=force)
        finally:
            close_quietly(connection)

    try:
        report = call_with_retry(attempt, backoff, describe=f"migration of queue {target.name!r}")
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as error:
        if error.reply_code == CONNECTION_FORCED:  # a node going down, retried till the deadline: lost
            raise _lost(target, error) from error
        raise BrokerError(f"migration of queue {target.name!r} in vhost {target.vhost!r}: {_refusal(error)}") from error
    except (pika.exceptions.AMQPError, OSError) as error:
        raise _lost(target, error) from error
    if report.cancelled:
        log.warning(
            "warning: queue %r in vhost %r: its %d consumer(s) were cancelled when the old queue was replaced "
            "(--force); they must reconnect",
            target.name,
            target.vhost,
            report.cancelled,
        )
    return report
