"""Moving messages when the broker misbehaves, on a throwaway node of the module's own: memory and disk alarms,
a node that stops answering, a node killed mid-move, and the broker's shovel finishing a move provision began.

Each run is a real `provision` process; each count a passive declare.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import requests
from nodes import ThrowawayNode
from provision_cli import PROVISION
from rabbit import consume_all, publish_all_confirmed, wait_for

from provisioner.broker.pump import MARKER, NODE_KILL_WINDOW, PREFETCH
from provisioner.broker.shovel import shovel_name
from provisioner.migration.steps import temporary_name
from provisioner.topology.model import LOCK_QUEUE

QUEUE = "work"
SHOVELLED = 10_000  # enough that the shovel is still at work when provision is killed
TOPOLOGY = """
version: 1
vhost: VHOST
queues:
  work: {max_length: LIMIT}
"""


@pytest.fixture(scope="module")
def node(broker: None) -> Iterator[ThrowawayNode]:
    started = ThrowawayNode()
    try:
        started.start()
        yield started
    finally:
        os.kill(int((started.config.folder / "pid").read_text().strip()), signal.SIGCONT)  # never leave it stopped
        started.destroy()


def publish_confirmed(
    node: ThrowawayNode, vhost: str, queue: str, bodies: list[bytes], headers: dict[str, Any] | None = None
) -> None:
    """Persistent messages, pipelined, each confirmed (tests/rabbit.py)."""
    connection = pika.BlockingConnection(node.parameters(vhost))
    properties = pika.BasicProperties(delivery_mode=2, headers=headers)
    publish_all_confirmed(connection, ((queue, body, properties) for body in bodies))
    connection.close()


class Case:
    """One vhost of the node with a filled queue, and the `provision` commands that migrate it."""

    def __init__(self, node: ThrowawayNode, folder: Path, name: str, messages: int) -> None:
        self.node, self.vhost, self.messages = node, name, messages
        port = node.config.management_port
        self.api = f"http://127.0.0.1:{port}/api"
        requests.put(f"{self.api}/vhosts/{name}", auth=("guest", "guest"), timeout=60).raise_for_status()
        body = {"configure": ".*", "write": ".*", "read": ".*"}
        requests.put(f"{self.api}/permissions/{name}/guest", json=body, auth=("guest", "guest"), timeout=60)
        self.before, self.after = folder / f"{name}-before.yaml", folder / f"{name}-after.yaml"
        self.before.write_text(TOPOLOGY.replace("VHOST", name).replace("LIMIT", "1000000"))
        self.after.write_text(TOPOLOGY.replace("VHOST", name).replace("LIMIT", "2000000"))
        self.env = {
            **os.environ,
            "PROVISION_AMQP_URL": node.amqp_url,
            "PROVISION_MANAGEMENT_URL": f"http://guest:guest@127.0.0.1:{port}",
        }
        assert self.run("apply", str(self.before)).returncode == 0
        publish_confirmed(node, name, QUEUE, [b"m-%d" % n for n in range(messages)])

    def start(self, *argv: str) -> subprocess.Popen[str]:
        command = [PROVISION, *argv]
        return subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PROVISION, *argv], env=self.env, capture_output=True, text=True, check=False)

    def migrate(self, *flags: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "--migrate", "--retry-seconds", "5", *flags, str(self.after))

    def count(self, queue: str) -> int | None:
        connection = pika.BlockingConnection(self.node.parameters(self.vhost))
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return None
        finally:
            if connection.is_open:
                connection.close()

    def bodies(self) -> list[bytes]:
        connection = pika.BlockingConnection(self.node.parameters(self.vhost))
        seen = consume_all(connection.channel(), QUEUE)
        connection.close()
        return seen

    def assert_every_message_once_or_within_the_window(self, window: int = PREFETCH) -> None:
        seen = self.bodies()
        assert set(seen) == {b"m-%d" % n for n in range(self.messages)}
        assert self.messages <= len(seen) <= self.messages + window  # the README's duplicate bound
        assert self.count(temporary_name(QUEUE)) is None

    def lock_held(self) -> bool:
        response = requests.get(f"{self.api}/queues/{self.vhost}/{LOCK_QUEUE}", auth=("guest", "guest"), timeout=60)
        return response.status_code == 200


REPLAY_TOPOLOGY = """
version: 1
vhost: VHOST
queues:
  work: {max_length: 1000000, dead_letter: true}
"""


def replay_case(node: ThrowawayNode, tmp_path: Path, vhost: str, letters: int) -> tuple[Case, Path]:
    """A vhost whose 'work.dead' holds ``letters`` failed tasks of 'work' (confirmed), and its topology."""
    case = Case(node, tmp_path, vhost, 0)
    topology = tmp_path / f"{vhost}.yaml"
    topology.write_text(REPLAY_TOPOLOGY.replace("VHOST", vhost))
    applied = case.run("apply", "--migrate", str(topology))  # Case made an empty 'work' without a dead-letter queue
    assert applied.returncode == 0, applied.stderr
    case.messages = letters
    publish_confirmed(node, vhost, "work.dead", [b"m-%d" % n for n in range(letters)], {"x-failed-queue": QUEUE})
    return case, topology


def held(case: Case, *queues: str) -> int:
    """Ready messages of the queues, once the broker took back what the stopped command had unacked."""
    return wait_for(lambda: total if (total := sum(case.count(q) or 0 for q in queues)) >= case.messages else 0)


# A disk alarm blocks publishers exactly as a memory alarm does (connection.blocked, then the broker stops reading):
# the movers see the same thing, so one kind is tested (the disk one took 22 s more per leg and proved nothing more).
ALARM = (("set_vm_memory_high_watermark", "0.0000001"), ("set_vm_memory_high_watermark", "0.4"))


@pytest.mark.parametrize(("alarm", "clear"), [ALARM], ids=["memory"])
def test_an_alarm_ends_a_migration_and_a_replay_in_one_line_and_reruns_finish(
    node: ThrowawayNode, tmp_path: Path, alarm: tuple[str, str], clear: tuple[str, str]
) -> None:
    """Both movers blocked by one alarm (two vhosts at once): each stops in bounded time, keeps every message."""
    case = Case(node, tmp_path, f"alarm-{alarm[0][4:8]}", 1000)
    replay, topology = replay_case(node, tmp_path, f"replay-alarm-{alarm[0][4:8]}", 500)
    node.ctl(*alarm)
    try:
        migrating = case.start("apply", "--migrate", "--retry-seconds", "5", str(case.after))
        replaying = replay.start("dlq", "replay", "--retry-seconds", "5", str(topology), "work.dead")
        _, migrate_err = migrating.communicate()
        _, replay_err = replaying.communicate()
    finally:
        node.ctl(*clear)
    lines = migrate_err.strip().splitlines()
    assert migrating.returncode == 1 and len(lines) == 1, migrate_err
    assert "a memory or disk alarm" in lines[0] and "its messages are in 'work'" in lines[0], lines[0]
    assert "provision apply --migrate" in lines[0]
    lines = replay_err.strip().splitlines()
    assert replaying.returncode == 1 and len(lines) == 1, replay_err
    assert "alarm" in lines[0] and "still in 'work.dead'" in lines[0] and "run the command again" in lines[0]
    # copies confirmed before the block stay beside their originals, never acked
    assert held(case, QUEUE, temporary_name(QUEUE)) <= case.messages + PREFETCH
    assert held(replay, QUEUE, "work.dead") <= replay.messages + PREFETCH
    wait_for(lambda: not case.lock_held())  # the vhost lock went with the process
    finished = case.migrate()
    assert finished.returncode == 0, finished.stderr
    case.assert_every_message_once_or_within_the_window()
    finished = replay.run("dlq", "replay", "--retry-seconds", "5", str(topology), "work.dead")
    assert finished.returncode == 0, finished.stderr
    assert replay.count("work.dead") == 0
    replay.assert_every_message_once_or_within_the_window()


def test_a_node_that_stops_answering_ends_the_migration_in_bounded_time(node: ThrowawayNode, tmp_path: Path) -> None:
    case = Case(node, tmp_path, "frozen", 4000)
    pid = int((node.config.folder / "pid").read_text().strip())
    running = case.start("apply", "--migrate", "--retry-seconds", "5", str(case.after))
    try:
        wait_for(lambda: (case.count(temporary_name(QUEUE)) or 0) > 0 or running.poll() is not None, timeout=120)
        os.kill(pid, signal.SIGSTOP)  # the node stops answering, its sockets stay open
        _, stderr = running.communicate()  # no time limit here: ending by itself is the point
    finally:
        os.kill(pid, signal.SIGCONT)
    assert running.returncode == 1, stderr
    assert stderr.count("\n") == 1 and "provision apply --migrate" in stderr, stderr
    wait_for(lambda: not case.lock_held(), timeout=120)
    finished = case.migrate()
    assert finished.returncode == 0, finished.stderr
    case.assert_every_message_once_or_within_the_window()


def test_a_node_killed_mid_move_duplicates_at_most_the_window(node: ThrowawayNode, tmp_path: Path) -> None:
    """One kill of the node in the middle of a migration and of a replay (two vhosts), each then run again.

    The bound: the unacked deliveries (the prefetch) plus the acks since the last marker the node forgot.
    """
    case = Case(node, tmp_path, "killed", 8000)
    replay, topology = replay_case(node, tmp_path, "replay-killed", 8000)
    running = case.start("apply", "--migrate", "--retry-seconds", "2", str(case.after))
    wait_for(lambda: (case.count(temporary_name(QUEUE)) or 0) > 1000 or running.poll() is not None, timeout=120)
    replaying = replay.start("dlq", "replay", "--retry-seconds", "2", str(topology), "work.dead")
    wait_for(lambda: (replay.count(QUEUE) or 0) > 2000 or replaying.poll() is not None, timeout=120)
    assert running.poll() is None, "the migration ended before the node could be killed mid-move"
    assert replaying.poll() is None, "the replay ended before the node could be killed mid-move"
    node.kill()
    running.communicate()
    replaying.communicate()
    node.start()
    finished = case.migrate()
    assert finished.returncode == 0, finished.stderr
    case.assert_every_message_once_or_within_the_window(NODE_KILL_WINDOW)
    finished = replay.run("dlq", "replay", "--retry-seconds", "5", str(topology), "work.dead")
    assert finished.returncode == 0, finished.stderr
    assert replay.count("work.dead") == 0
    replay.assert_every_message_once_or_within_the_window(NODE_KILL_WINDOW)


def test_the_broker_shovel_finishes_a_move_whose_provision_was_killed(node: ThrowawayNode, tmp_path: Path) -> None:
    node.ctl("enable", "rabbitmq_shovel", tool="rabbitmq-plugins")
    try:
        case = Case(node, tmp_path, "shovelled", SHOVELLED)
        running = case.start("apply", "--migrate", str(case.after))
        shovel = f"{case.api}/parameters/shovel/{case.vhost}/{shovel_name(QUEUE)}"
        wait_for(lambda: requests.get(shovel, auth=("guest", "guest"), timeout=60).ok or running.poll() is not None)
        running.kill()  # SIGKILL: provision is gone, the broker's shovel is not
        running.communicate()
        assert running.returncode == -signal.SIGKILL
        # it finished the move by itself (the source empties before the last copies are confirmed)
        wait_for(lambda: case.count(QUEUE) == 0 and case.count(temporary_name(QUEUE)) == SHOVELLED, timeout=300)
        finished = case.migrate()
        assert finished.returncode == 0 and f"{SHOVELLED} message(s) migrated" in finished.stdout, finished.stdout
        seen = case.bodies()
        assert len(seen) == SHOVELLED and set(seen) == {b"m-%d" % n for n in range(SHOVELLED)}  # no duplicate at all
    finally:
        node.ctl("disable", "rabbitmq_shovel", tool="rabbitmq-plugins")


def test_a_resumed_migration_never_carries_a_killed_pumps_marker_into_the_queue(
    node: ThrowawayNode, tmp_path: Path
) -> None:
    """A pump killed mid-move leaves an empty marker (x-provisioner-sync) in its source; the shovel plugin is
    enabled before the re-run. The shovel would copy the marker like any message: moving back, the pump only."""
    case = Case(node, tmp_path, "marker-resume", 300)
    temporary = temporary_name(QUEUE)
    connection = pika.BlockingConnection(node.parameters(case.vhost))
    connection.channel().queue_declare(temporary, durable=True)  # where a killed migration left it
    connection.close()
    for source in (QUEUE, temporary):
        publish_confirmed(node, case.vhost, source, [b""], headers={MARKER: 1})
    node.ctl("enable", "rabbitmq_shovel", tool="rabbitmq-plugins")
    try:
        finished = case.migrate()
        assert finished.returncode == 0 and "300 message(s) migrated" in finished.stdout, finished.stdout
        seen = case.bodies()
        assert sorted(seen) == sorted(b"m-%d" % n for n in range(300))  # no empty marker, no duplicate
        assert case.count(temporary) is None
    finally:
        node.ctl("disable", "rabbitmq_shovel", tool="rabbitmq-plugins")
