"""How fast `apply --migrate` and `dlq replay` move messages, beside the broker's own shovel, in one run.

    python bench/migrate.py                       # N = 100,000 messages of 200 B
    python bench/migrate.py --messages 20000 --size 1024

Everything runs on a throwaway node of its own (tests/nodes.py), which the
benchmark starts, gives the ``rabbitmq_shovel`` plugin, and removes afterwards:
the machine's broker is never touched. Each figure is messages of the backlog
per second over the whole `provision` command (process start to exit):

- the broker's shovel: one dynamic shovel (ack-mode on-confirm, src-delete-after
  queue-length) moves the backlog from one queue to another, timed from its
  creation until it deleted itself: the yardstick;
- `apply --migrate` (classic queue, an x-argument changed: a replace) moves each
  message twice, so it must reach 0.35x the shovel with the plugin on, 0.125x
  without (the pipelined pump);
- `dlq replay` moves each message once: 0.7x with the plugin, 0.25x without.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nodes import ThrowawayNode

PROVISION = str(Path(sys.executable).with_name("provision"))
VHOST = "bench"
TOPOLOGY = """
version: 1
vhost: bench
exchanges:
  orders: {type: topic}
queues:
  work:
    max_length: LIMIT
    dead_letter: true
    bindings: [{exchange: orders, routing_key: order.created}]
"""
# the thresholds: a migration moves each message twice, a replay once
TARGETS = {"migrate": (0.35, 0.125), "replay": (0.7, 0.25)}


class Bench:
    """The node, its vhost and the commands the benchmark times."""

    def __init__(self, node: ThrowawayNode, folder: Path, count: int, size: int) -> None:
        self.node, self.folder, self.count, self.body = node, folder, count, b"x" * size
        port = node.config.management_port
        self.api = f"http://127.0.0.1:{port}/api"
        self.env = {
            **os.environ,
            "PROVISION_AMQP_URL": node.amqp_url,
            "PROVISION_MANAGEMENT_URL": f"http://guest:guest@127.0.0.1:{port}",
        }

    def provision(self, *argv: str) -> float:
        """Seconds one `provision` command takes, process start to exit; fails loudly when it fails."""
        started = time.perf_counter()
        done = subprocess.run([PROVISION, *argv], env=self.env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"provision {' '.join(argv)} failed: {done.stdout}{done.stderr}")
        return elapsed

    def topology(self, limit: int) -> str:
        path = self.folder / f"topology-{limit}.yaml"
        path.write_text(TOPOLOGY.replace("LIMIT", str(limit)))
        return str(path)

    def fill(self, queue: str, headers: dict[str, str] | None = None) -> None:
        """Publish the backlog straight into a queue and wait until the broker counts all of it."""
        connection = pika.BlockingConnection(self.node.parameters(VHOST))
        channel = connection.channel()
        properties = pika.BasicProperties(delivery_mode=2, headers=headers)
        for _ in range(self.count):
            channel.basic_publish("", queue, self.body, properties)
        while self.ready(queue, channel) < self.count:
            time.sleep(0.2)
        connection.close()

    def ready(self, queue: str, channel: object = None) -> int:
        if channel is None:
            connection = pika.BlockingConnection(self.node.parameters(VHOST))
            try:
                return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
            finally:
                connection.close()
        return int(channel.queue_declare(queue, passive=True).method.message_count)  # type: ignore[attr-defined]

    def shovel(self) -> float:
        """Seconds the broker's shovel takes to move the backlog of 'work' into 'shovelled'."""
        self.fill("work")
        connection = pika.BlockingConnection(self.node.parameters(VHOST))
        connection.channel().queue_declare("shovelled", durable=True)
        connection.close()
        uri = f"amqp:///{VHOST}"
        value = {
            "src-protocol": "amqp091",
            "src-uri": uri,
            "src-queue": "work",
            "dest-protocol": "amqp091",
            "dest-uri": uri,
            "dest-queue": "shovelled",
            "ack-mode": "on-confirm",
            "src-delete-after": "queue-length",
        }
        url = f"{self.api}/parameters/shovel/{VHOST}/bench"
        started = time.perf_counter()
        requests.put(url, json={"value": value}, auth=("guest", "guest"), timeout=60).raise_for_status()
        while requests.get(url, auth=("guest", "guest"), timeout=60).status_code == 200:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        assert self.ready("shovelled") == self.count and self.ready("work") == 0
        connection = pika.BlockingConnection(self.node.parameters(VHOST))
        connection.channel().queue_delete("shovelled")
        connection.close()
        return elapsed

    def migrate(self, limit: int) -> float:
        """Seconds `apply --migrate` takes to replace 'work' (its x-max-length changes) holding the backlog."""
        self.fill("work")
        elapsed = self.provision("apply", "--migrate", self.topology(limit))
        assert self.ready("work") == self.count, "messages lost or duplicated"
        connection = pika.BlockingConnection(self.node.parameters(VHOST))
        connection.channel().queue_purge("work")
        connection.close()
        return elapsed

    def replay(self, limit: int) -> float:
        """Seconds `dlq replay` takes to move the backlog of 'work.dead' back to 'work'."""
        self.fill("work.dead", {"x-failed-queue": "work"})
        elapsed = self.provision("dlq", "replay", self.topology(limit), "work.dead")
        assert self.ready("work") == self.count and self.ready("work.dead") == 0
        connection = pika.BlockingConnection(self.node.parameters(VHOST))
        connection.channel().queue_purge("work")
        connection.close()
        return elapsed

    def plugin(self, on: bool) -> None:
        self.node.ctl("enable" if on else "disable", "rabbitmq_shovel", tool="rabbitmq-plugins")


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--messages", type=int, default=100_000)
    options.add_argument("--size", type=int, default=200, help="body bytes")
    arguments = options.parse_args()
    node = ThrowawayNode()
    try:
        node.start()
        with tempfile.TemporaryDirectory() as folder:
            bench = Bench(node, Path(folder), arguments.messages, arguments.size)
            bench.plugin(True)
            bench.provision("apply", bench.topology(10_000_000))
            shovel = bench.shovel()
            rows = [
                ("migrate", "plugin on", bench.migrate(20_000_000)),
                ("replay", "plugin on", bench.replay(20_000_000)),
            ]
            bench.plugin(False)
            rows += [
                ("migrate", "plugin off", bench.migrate(10_000_000)),
                ("replay", "plugin off", bench.replay(10_000_000)),
            ]
    finally:
        node.destroy()
    count = arguments.messages
    rate = count / shovel
    print(f"{count} messages of {arguments.size} B, RabbitMQ throwaway node, one run")
    print(f"  {'broker shovel, one move':32} {shovel:7.2f} s {rate:9.0f} msg/s")
    for command, plugin, seconds in rows:
        ours = count / seconds
        wanted = TARGETS[command][0 if plugin == "plugin on" else 1]
        verdict = "ok" if ours / rate >= wanted else "BELOW TARGET"
        print(
            f"  {command + ', ' + plugin:32} {seconds:7.2f} s {ours:9.0f} msg/s  "
            f"{ours / rate:5.2f}x the shovel (target {wanted}x) {verdict}"
        )


if __name__ == "__main__":
    main()
