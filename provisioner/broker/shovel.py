"""Moving a queue's messages with the broker's own dynamic shovel (plugin ``rabbitmq_shovel``), when it is on.

The shovel runs inside the broker: ``ack-mode: on-confirm`` acks each message at
the source only once its copy is confirmed, and ``src-delete-after:
queue-length`` makes it move the messages present when it starts, then delete
itself. Its definition is a runtime parameter named after the source queue
(:func:`shovel_name`), so it outlives a killed provision: it finishes the move
on its own, and a re-run finds it by name and waits for it instead of starting
a second one.

It publishes to the default exchange with the destination queue's name
(``dest-exchange: ""``), so it never declares the destination: the move's
destination exists before the shovel starts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from urllib.parse import quote

from provisioner.broker.management import Management, ManagementError
from provisioner.broker.pump import MoveStalled

COMPONENT = "shovel"
POLL_SECONDS = 0.05


def shovel_name(source: str) -> str:
    """The shovel that moves ``source``'s messages: one per queue, found again by a re-run."""
    return "provisioner-move-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]


def definition(vhost: str, source: str, destination: str) -> dict[str, object]:
    """A dynamic shovel that moves the messages present at its start, each acked once its copy is confirmed."""
    uri = "amqp:///" + quote(vhost, safe="")  # no host: a direct connection inside the broker
    return {
        "src-protocol": "amqp091",
        "src-uri": uri,
        "src-queue": source,
        "dest-protocol": "amqp091",
        "dest-uri": uri,
        "dest-exchange": "",
        "dest-exchange-key": destination,
        "ack-mode": "on-confirm",
        "src-delete-after": "queue-length",
    }


class BrokerShovel:
    """Dynamic shovels of one vhost through the management API."""

    def __init__(self, management: Management, vhost: str) -> None:
        self.management, self.vhost = management, vhost

    def running(self, source: str) -> bool:
        """Whether a shovel of ours still moves ``source`` (a killed run's, say); False for a user who may not see."""
        try:
            return self.management.parameter(COMPONENT, self.vhost, shovel_name(source)) is not None
        except ManagementError as error:
            if error.status in (401, 403):  # runtime parameters need the policymaker tag: no shovel for this user
                return False
            raise

    def start(self, source: str, destination: str) -> bool:
        """Start the shovel (or keep the one running); False when the broker has no shovel plugin."""
        if self.running(source):
            return True
        try:
            self.management.put_parameter(
                COMPONENT, self.vhost, shovel_name(source), definition(self.vhost, source, destination)
            )
        except ManagementError as error:
            if error.status == 400 and "not found" in str(error):  # component shovel not found: plugin off
                return False
            if error.status in (401, 403):  # a user without the policymaker tag moves with the pump
                return False
            raise
        return True

    def wait(self, source: str, count: Callable[[], int], stall_seconds: float) -> None:
        """Wait until the shovel deleted itself; stall when ``count`` of the source stays put too long."""
        last, since = count(), time.monotonic()
        while self.running(source):
            time.sleep(POLL_SECONDS)
            now = count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > stall_seconds:
                raise MoveStalled(
                    f"the broker's shovel {shovel_name(source)!r} moved nothing for {stall_seconds:.0f} s "
                    f"({now} message(s) still in {source!r}; an alarm or a refusal?); it goes on by itself"
                )
