"""Emptying one queue into another: the broker's shovel when its plugin is on, else the pipelined pump.

Migrations use it for both of their moves (into the temporary queue and back).
Each round moves the messages present at its start; rounds go on until the
source is seen empty, at most :data:`ROUNDS` of them, so publishers that keep
filling the source cannot keep a move busy for ever: what they add after the
last round is left for the caller's cut-over (migration: ``swap``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from provisioner.broker.lazy import LazyModule
from provisioner.broker.pump import PREFETCH, MoveNacked, MoveStalled, MoveStoppedAt, Pump, Send, Stop, foreign_user_id
from provisioner.broker.retry import Backoff
from provisioner.broker.shovel import BrokerShovel

if TYPE_CHECKING:
    import pika
    import pika.exceptions
    import pika.spec
else:  # imported on first use: plan and validate never need it
    pika = LazyModule("pika", "exceptions", "spec")

T = TypeVar("T")

ROUNDS = 5
HEARTBEAT_SECONDS = 10  # a node that stops answering is noticed within two or three of these
MIN_HEARTBEAT_SECONDS = 3  # a shorter stall time (--retry-seconds) shortens the heartbeat down to this
MIN_STALL_SECONDS = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoveSettings:
    """How a move runs: the broker's shovel if it may (None: never), how long no progress is tolerated."""

    shovel: BrokerShovel | None
    stall_seconds: float


def stall_seconds(backoff: Backoff) -> float:
    """How long a move may make no progress: as long as a connection may be retried (at least a few seconds)."""
    return max(backoff.deadline, MIN_STALL_SECONDS)


def bounded(parameters: pika.ConnectionParameters, stall: float) -> pika.ConnectionParameters:
    """``parameters`` with a heartbeat and a bound on how long the broker may block the connection (alarms)."""
    parameters = copy.copy(parameters)
    # A command waiting for an answer (a count) notices a silent node only by its heartbeat: half the stall time
    parameters.heartbeat = max(MIN_HEARTBEAT_SECONDS, min(HEARTBEAT_SECONDS, round(stall / 2)))
    parameters.blocked_connection_timeout = stall  # a blocked connection answers nothing at all: see unblocked()
    return parameters


def unblocked(call: Callable[[], T], stall: float) -> T:
    """``call()``; a connection the broker kept blocked past ``stall`` (an alarm) as one MoveStalled line.

    Raised outside the except block: the stall is final, never a transient fault to retry.
    """
    try:
        return call()
    except pika.exceptions.ConnectionBlockedTimeout:
        pass
    raise MoveStalled(
        f"the broker blocked the connection for {stall:.0f} s: a memory or disk alarm "
        "(rabbitmqctl status shows which) blocks publishing"
    )


def drain(
    connection: pika.BlockingConnection,
    count: Callable[[str], int],
    source: str,
    destination: str,
    settings: MoveSettings,
    *,
    quorum: bool = False,
    guard: Callable[[int], None] | None = None,
    sync_every: int = 0,
    marker_room: Callable[[], bool] | None = None,
    user: str | None = None,
) -> int:
    """Move ``source``'s messages to ``destination`` until it is seen empty (or ROUNDS passed); how many moved.

    ``guard(n)`` is called before each round with the messages about to move: it raises to stop the move.
    """
    moved = 0
    shovel = settings.shovel
    to_destination = Send("", destination)
    forged = foreign_user_id(user)

    def route(properties: pika.spec.BasicProperties, _body: bytes) -> Send | Stop:
        refusal = forged(properties)
        return to_destination if refusal is None else Stop(refusal)

    tried = False  # whether one message went alone first (see below): a round of its own, not counted
    for _ in range(ROUNDS + 1):
        if shovel is not None and shovel.running(source):  # a killed run's shovel: let it finish
            shovel.wait(source, lambda: count(source), settings.stall_seconds)
        waiting = count(source)
        if waiting == 0:
            break
        if guard is not None:
            guard(waiting)
        if shovel is not None and shovel.start(source, destination):
            shovel.wait(source, lambda: count(source), settings.stall_seconds)
            moved += waiting
            continue
        settings = MoveSettings(None, settings.stall_seconds)  # no plugin: the pump from now on
        shovel = None
        # One message goes alone first: a destination that refuses (a queue restarting, a diversion still in
        # force) nacks it with no other copy in flight, so a retried move duplicates one message, not a window.
        alone = not tried and waiting > 1
        tried = True
        pump = Pump(
            connection,
            source,
            route,
            stall_seconds=settings.stall_seconds,
            prefetch=1 if alone else PREFETCH,
            quorum=quorum,
            sync_every=0 if alone else sync_every,
            marker_room=marker_room,
            final_sync=not alone,  # the next round of this loop takes the marker
        )
        try:
            moved += pump.run(total=1 if alone else waiting, until_empty=lambda: count(source) == 0).moved
        except MoveNacked as error:  # which move, so a re-run's log says where the broker refused
            raise MoveNacked(f"{error} moving {source!r} to {destination!r}") from error
        except MoveStoppedAt as error:  # how many this whole move took before it, not this round alone
            raise MoveStoppedAt(error.reason, moved + error.moved) from None
    log.info("moved %d messages %s -> %s", moved, source, destination)
    return moved
