"""How fast `apply --migrate` moves messages: a classic queue of N messages becomes a quorum queue.

    python bench/migrate.py                    # N = 10000 messages of 1 KiB
    python bench/migrate.py --messages 50000 --size 4096

Each message is moved twice (into the temporary queue and back), with publisher
confirms. Compared with the broker's own rate for the same messages: publish
with confirms plus consume with acks, once, on one channel.
"""

from __future__ import annotations

import argparse
import time
import uuid
from urllib.parse import quote

import pika
import requests

from provisioner.broker.endpoints import Endpoints
from provisioner.broker.management import Management
from provisioner.migration.amqp import run_migration
from provisioner.topology.model import Queue

QUEUE = "work"


def fill(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, count: int, body: bytes) -> float:
    """Publish ``count`` persistent messages with confirms; the seconds it took."""
    started = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    return time.perf_counter() - started


def consume_all(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, count: int) -> float:
    """Consume and ack ``count`` messages (prefetch 200, acks batched with multiple=True)."""
    channel.basic_qos(prefetch_count=200)
    started = time.perf_counter()
    for seen, (method, _, _) in enumerate(channel.consume(queue), start=1):
        if seen % 100 == 0 or seen == count:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if seen == count:
            break
    channel.cancel()
    return time.perf_counter() - started


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--messages", type=int, default=10_000)
    options.add_argument("--size", type=int, default=1024, help="body bytes")
    arguments = options.parse_args()
    endpoints = Endpoints.from_environment()
    management = Management(endpoints)
    auth = endpoints.management_auth
    vhost = f"bench-migrate-{uuid.uuid4().hex[:8]}"
    management.create_vhost(vhost, endpoints.amqp_user)
    body = b"x" * arguments.size
    count = arguments.messages
    try:
        connection = pika.BlockingConnection(endpoints.amqp_parameters(vhost))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("baseline", durable=True)
        baseline = fill(channel, "baseline", count, body) + consume_all(channel, "baseline", count)

        channel.exchange_declare("orders", "topic", durable=True)
        channel.queue_declare(QUEUE, durable=True)
        channel.queue_bind(QUEUE, "orders", "order.#")
        fill(channel, QUEUE, count, body)
        connection.close()

        started = time.perf_counter()
        report = run_migration(Queue(vhost, QUEUE, "quorum"), endpoints.amqp_parameters(vhost), management)
        migration = time.perf_counter() - started

        check = pika.BlockingConnection(endpoints.amqp_parameters(vhost))
        kept = check.channel().queue_declare(QUEUE, passive=True).method.message_count
        check.close()
    finally:
        requests.delete(f"{endpoints.management_base}/api/vhosts/{quote(vhost, safe='')}", auth=auth, timeout=60)

    print(f"{count} messages of {arguments.size} B, classic -> quorum")
    print(f"  migration (moves each message twice): {migration:7.2f} s  {report.moves / migration:8.0f} moves/s")
    print(f"  broker baseline (publish+consume once): {baseline:6.2f} s  {count / baseline:8.0f} messages/s")
    print(f"  messages kept: {kept} of {count}; {report.moves} moves; steps: {len(report.steps)}")
    print(f"  ratio migration / (2 x baseline): {migration / (2 * baseline):.2f}")


if __name__ == "__main__":
    main()
