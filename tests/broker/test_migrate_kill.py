"""Property: `provision apply --migrate` of a random backlog killed (SIGKILL) at a random moment while a
publisher with confirms keeps publishing, then re-run until the plan is clean, keeps every confirmed message
and duplicates at most the pump's in-flight window."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from provision_cli import PROVISION, run
from rabbit import fresh_vhost, parameters, wait_for

from provisioner.broker.pump import PREFETCH
from provisioner.migration.steps import temporary_name

QUEUE = "work"
MESSAGES = 1000
# Beside the in-flight window, docs/safe-changes.md names one more source of duplicates: a message published in the
# instant between a binding being added to one queue and removed from the other reaches both. A migration switches
# its bindings twice (and a killed one's re-run may switch them again); this test's publisher sends at most one
# message per confirm round trip plus 2 ms, so each instant costs a message or two. Uncut runs here show 0-2.
BINDING_SWITCH_DUPLICATES = 20
TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  orders: {type: topic}
queues:
  work:
    max_length: LIMIT
    bindings:
      - {exchange: orders, routing_key: order.created}
      - {exchange: orders, routing_key: "order.*.paid"}
"""


def provision(*args: str, vhost: str) -> subprocess.Popen[bytes]:
    """A real `provision` process (so it can be killed like a deploy job)."""
    env = {**os.environ, "TEST_VHOST": vhost}
    return subprocess.Popen([PROVISION, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(*args: str, vhost: str) -> tuple[int, str]:
    process = provision(*args, vhost=vhost)
    output, _ = process.communicate()
    return process.returncode, output.decode()


@dataclass
class Publisher:
    """Publishes through the exchange with confirms and mandatory; remembers what the broker confirmed."""

    vhost: str
    confirmed: list[bytes] = field(default_factory=list)
    unroutable: list[bytes] = field(default_factory=list)
    nacked: list[bytes] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        connection = pika.BlockingConnection(parameters(self.vhost))
        channel = connection.channel()
        channel.confirm_delivery()
        n = 0
        while not self.stop.is_set():
            body = b"live-%d" % n
            try:
                channel.basic_publish(
                    "orders", "order.created", body, pika.BasicProperties(delivery_mode=2), mandatory=True
                )
                self.confirmed.append(body)
            except pika.exceptions.UnroutableError:
                self.unroutable.append(body)
            except pika.exceptions.NackError:  # the swap's diversion refuses (and keeps) it: a publisher goes on
                self.nacked.append(body)
            n += 1
            self.stop.wait(0.002)  # a steady producer, not a flood that starves the migration
        connection.close()

    def __enter__(self) -> Publisher:
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def fill(vhost: str, messages: int = MESSAGES) -> set[bytes]:
    """The queue's messages before the migration (published at once, then counted until all are there)."""
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    sent = {b"seed-%d" % n for n in range(messages)}
    for body in sorted(sent):
        channel.basic_publish("orders", "order.created", body, pika.BasicProperties(delivery_mode=2))
    wait_for(lambda: channel.queue_declare(QUEUE, passive=True).method.message_count == messages)
    connection.close()
    return sent


def drain(vhost: str, queue: str) -> list[bytes]:
    """Every message of a queue nobody publishes to any more: as many as its exact count says."""
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    held = channel.queue_declare(queue, passive=True).method.message_count
    bodies = []
    if held:
        for _, _, body in channel.consume(queue, auto_ack=True):
            bodies.append(body)
            if len(bodies) == held:
                break
    connection.close()
    return bodies


def exists(vhost: str, queue: str) -> bool:
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        connection.channel().queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return False
    finally:
        if connection.is_open:
            connection.close()


def prepare(vhost: str, directory: Path, messages: int = MESSAGES) -> tuple[str, set[bytes]]:
    """The queue as the `before` topology makes it, filled; returns the `after` file and the bodies sent."""
    before, after = directory / f"{vhost}-before.yaml", directory / f"{vhost}-after.yaml"
    before.write_text(TOPOLOGY.replace("LIMIT", "100000"))
    after.write_text(TOPOLOGY.replace("LIMIT", "200000"))  # an x-argument change: a replace
    code, output = finish("apply", str(before), vhost=vhost)
    assert code == 0, output
    return str(after), fill(vhost, messages)


@pytest.fixture(scope="module")
def workdir(broker: None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@pytest.fixture(scope="module")
def full_run(workdir: Path) -> float:
    """Seconds an uncut `apply --migrate` of this queue takes here, process start included."""
    with fresh_vhost("migrate-kill") as vhost:
        after, _ = prepare(vhost, workdir)
        started = time.monotonic()
        code, output = finish("apply", "--migrate", after, vhost=vhost)
        assert code == 0 and f"{MESSAGES} message(s) migrated" in output, output
        return time.monotonic() - started


@settings(
    max_examples=5,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: each example is a real migration
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(moment=st.floats(min_value=0.0, max_value=1.0), backlog=st.integers(min_value=1, max_value=3000))
def test_killed_at_any_moment_then_rerun_keeps_every_confirmed_message(
    moment: float, backlog: int, full_run: float, workdir: Path
) -> None:
    with fresh_vhost("migrate-kill") as vhost:
        after, sent = prepare(vhost, workdir, backlog)
        with Publisher(vhost) as publisher:
            killed = provision("apply", "--migrate", after, vhost=vhost)
            time.sleep(moment * full_run)  # the random moment of the kill is the point of this test
            killed.kill()  # SIGKILL: no cleanup of any kind
            killed.wait()
            reruns, outputs = 0, []
            while run("plan", "--detailed-exitcode", after, vhost=vhost).exit_code != 0:
                rerun = run("apply", "--migrate", after, vhost=vhost)
                assert rerun.exit_code == 0, rerun.output
                outputs.append(rerun.output)
                reruns += 1
                assert reruns <= 3, "apply --migrate does not converge"
            assert len(publisher.confirmed) > 0
        assert not exists(vhost, temporary_name(QUEUE))
        kept = drain(vhost, QUEUE)
        missing = (sent | set(publisher.confirmed)) - set(kept)
        print(
            f"killed at {moment * full_run:.2f}s of {full_run:.2f}s, {reruns} re-run(s), "
            f"{len(publisher.confirmed)} published meanwhile, {len(kept) - len(set(kept))} duplicates"
        )
        assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:5]}"
        # the documented bound: the pump's in-flight window for the one interrupted move, and the binding switches
        assert len(kept) - len(set(kept)) <= PREFETCH + BINDING_SWITCH_DUPLICATES, "\n".join(outputs)
        assert publisher.unroutable == []  # bound before unbound: never a moment without a queue
