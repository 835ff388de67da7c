"""Faults on a throwaway node: a node restarted in the middle of an apply and of a migration.

Re-running after the fault converges the broker, and no message is lost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pika
from nodes import ThrowawayNode, throwaway_node  # noqa: F401 - the fixture
from rabbit import wait_for

from provisioner.apply import ApplyOptions, converge, make_plan
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.management import Management
from provisioner.broker.retry import Backoff
from provisioner.errors import ProvisionerError
from provisioner.migration.amqp import run_migration
from provisioner.topology import load
from provisioner.topology.model import Queue

QUEUES = 300
MESSAGES = 3000


def restart_when(node: ThrowawayNode, ready: threading.Event, log: list[str]) -> threading.Thread:
    def restart() -> None:
        ready.wait(60)
        started = time.monotonic()
        node.restart()
        log.append(f"restarted in {time.monotonic() - started:.1f}s")

    thread = threading.Thread(target=restart)
    thread.start()
    return thread


def test_a_persistent_message_survives_a_node_restart(throwaway_node: ThrowawayNode) -> None:  # noqa: F811
    connection = pika.BlockingConnection(throwaway_node.parameters())
    channel = connection.channel()
    channel.queue_declare("survivor", durable=True)
    channel.confirm_delivery()
    channel.basic_publish("", "survivor", b"still here", pika.BasicProperties(delivery_mode=2))
    connection.close()
    throwaway_node.restart()
    connection = pika.BlockingConnection(throwaway_node.parameters())
    method, _, body = connection.channel().basic_get("survivor", auto_ack=True)
    connection.close()
    assert method is not None and body == b"still here"


def test_apply_interrupted_by_a_node_restart_converges_on_rerun(
    throwaway_node: ThrowawayNode,  # noqa: F811
    tmp_path: Path,
) -> None:
    lines = ["version: 1", "vhost: faults", "exchanges:", "  work: {type: topic}", "queues:"]
    for index in range(QUEUES):
        lines += [f"  q{index}:", f"    bindings: [{{exchange: work, routing_key: k{index}}}]", "    dead_letter: true"]
    topology_file = tmp_path / "topology.yaml"
    topology_file.write_text("\n".join(lines) + "\n")
    desired = load([topology_file])
    endpoints = Endpoints(throwaway_node.amqp_url, throwaway_node.management_url)
    # Retries shorter than a restart: the first apply must really be cut off.
    impatient = Management(endpoints, backoff=Backoff(attempts=2, initial=0.1, deadline=1.0))
    options = ApplyOptions(workers=2)

    halfway = threading.Event()
    outcome: list[object] = []

    def progress(count: int) -> None:  # called per batch of declarations, with how many it did
        outcome.extend([None] * count)
        if len(outcome) >= QUEUES:  # about a fifth of the objects are declared: hold until the node is down
            halfway.set()
            wait_for(lambda: not throwaway_node._port_open(throwaway_node.config.amqp_port), timeout=60)

    log: list[str] = []
    restarter = restart_when(throwaway_node, halfway, log)
    try:
        report = converge(desired, endpoints, impatient, options, progress)
        first = f"completed {report.done}"
    except ProvisionerError as error:
        first = f"failed: {error}"
    finally:  # never leave a restart running behind the fixture's teardown
        halfway.set()
        restarter.join()
    assert log, "the node was restarted"
    assert first.startswith("failed"), first

    patient = Management(endpoints)
    assert not make_plan(desired, patient).is_empty  # really half-applied
    converge(desired, endpoints, patient, options)
    assert make_plan(desired, Management(endpoints)).is_empty, f"first run {first}; {log}"


def test_migration_interrupted_by_a_node_restart_loses_nothing(throwaway_node: ThrowawayNode) -> None:  # noqa: F811
    connection = pika.BlockingConnection(throwaway_node.parameters())
    channel = connection.channel()
    channel.exchange_declare("orders", "topic", durable=True)
    channel.queue_declare("work", durable=True)
    channel.queue_bind("work", "orders", "a")
    channel.confirm_delivery()
    sent = {b"%d" % n for n in range(MESSAGES)}
    for body in sorted(sent):
        channel.basic_publish("orders", "a", body, pika.BasicProperties(delivery_mode=2))
    connection.close()

    reader = Management(Endpoints(management_url=throwaway_node.management_url))
    target = Queue("/", "work", "quorum")
    moving = threading.Event()

    def watch(step: object) -> None:
        if type(step).__name__ == "Move":  # hold the migration until the node is down
            moving.set()
            wait_for(lambda: not throwaway_node._port_open(throwaway_node.config.amqp_port), timeout=60)

    log: list[str] = []
    restarter = restart_when(throwaway_node, moving, log)
    try:
        run_migration(target, throwaway_node.parameters(), reader, before_step=watch, backoff=Backoff(attempts=1))
        first = "completed"
    except Exception as error:  # the node went away under it
        first = f"failed: {type(error).__name__}"
    finally:
        moving.set()
        restarter.join()
    assert log and first.startswith("failed"), first

    wait_for(lambda: reader.queue("/", "work") is not None or reader.queue("/", "work.provisioner-migrate"))
    run_migration(target, throwaway_node.parameters(), reader)
    connection = pika.BlockingConnection(throwaway_node.parameters())
    channel = connection.channel()
    assert channel.queue_declare("work", passive=True).method.message_count >= MESSAGES
    seen = set()
    while True:
        method, _, body = channel.basic_get("work", auto_ack=True)
        if method is None:
            break
        seen.add(body)
    connection.close()
    assert sent <= seen, f"first run {first}; missing {len(sent - seen)}"
    assert reader.queue("/", "work")["type"] == "quorum"
    assert reader.queue("/", "work.provisioner-migrate") is None
