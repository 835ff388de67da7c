"""How late each way of counting a queue's messages is (the figures behind broker/held.py).

    python bench/counts.py                                    # the machine's broker
    python bench/counts.py --amqp-port 5673 --management-url http://127.0.0.1:15673

For a classic and a quorum queue: 5 messages published, 3 taken by a basic.get
poller that does not acknowledge; then how many seconds until the statistics
(GET /api/queues/v/q) and the queues' own totals (disable_stats, enable_queue_totals)
show the 3 unacknowledged, and what a passive declare says (ready only). For a
stream: seconds until a passive declare counts 5 published messages, and until a
consumer at offset `first` receives the first. Each figure is capped at 15 s.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import pika
import requests

AUTH = ("guest", "guest")
CAP = 15.0


def seconds_until(condition: Callable[[], bool]) -> str:
    start = time.monotonic()
    while time.monotonic() - start < CAP:
        if condition():
            return f"{time.monotonic() - start:.2f} s"
        time.sleep(0.02)
    return f"> {CAP:.0f} s (never)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-port", type=int, default=5672)
    parser.add_argument("--management-url", default="http://127.0.0.1:15672")
    args = parser.parse_args()
    api, vhost = args.management_url + "/api", f"bench-counts-{uuid.uuid4().hex[:8]}"
    requests.put(f"{api}/vhosts/{vhost}", auth=AUTH, timeout=30).raise_for_status()
    requests.put(
        f"{api}/permissions/{vhost}/guest", auth=AUTH, json={"configure": ".*", "write": ".*", "read": ".*"}, timeout=30
    ).raise_for_status()
    connect = lambda: pika.BlockingConnection(  # noqa: E731
        pika.ConnectionParameters("127.0.0.1", args.amqp_port, vhost, pika.PlainCredentials(*AUTH))
    )
    try:
        connection, poller = connect(), connect()
        channel = connection.channel()
        channel.confirm_delivery()

        def row(queue: str, totals: bool) -> dict:
            params = {"disable_stats": "true", "enable_queue_totals": "true"} if totals else {}
            url = f"{api}/queues/{quote(vhost, safe='')}" + ("" if totals else f"/{queue}")
            found = requests.get(url, params=params, auth=AUTH, timeout=30).json()
            return next((r for r in found if r["name"] == queue), {}) if totals else found

        for queue_type in ("classic", "quorum"):
            queue = f"q-{queue_type}"
            channel.queue_declare(queue, durable=True, arguments={"x-queue-type": queue_type})
            for _ in range(5):
                channel.basic_publish("", queue, b"m")
            held = poller.channel()
            for _ in range(3):
                held.basic_get(queue, auto_ack=False)
            declared = channel.queue_declare(queue, passive=True).method
            ready, consumers = declared.message_count, declared.consumer_count
            print(f"{queue_type}: passive declare at once: {ready} ready, {consumers} consumers")
            start, seen = time.monotonic(), {}  # both polled from the same moment
            while len(seen) < 2 and time.monotonic() - start < CAP:
                for label, totals in (("queue totals", True), ("statistics", False)):
                    if label not in seen and row(queue, totals).get("messages_unacknowledged") == 3:
                        seen[label] = f"{time.monotonic() - start:.2f} s"
                time.sleep(0.02)
            for label in ("queue totals", "statistics"):
                print(f"{queue_type}: {label} show 3 unacked after {seen.get(label, f'> {CAP:.0f} s (never)')}")
        channel.queue_declare("s", durable=True, arguments={"x-queue-type": "stream"})
        for _ in range(5):
            channel.basic_publish("", "s", b"m")
        late = seconds_until(lambda: channel.queue_declare("s", passive=True).method.message_count == 5)
        print(f"stream: passive declare counts 5 after {late}")
        channel.basic_publish("", "s", b"m")
        reader = connect()
        reading = reader.channel()
        reading.basic_qos(prefetch_count=1)
        got: list[bool] = []
        start = time.monotonic()
        reading.basic_consume("s", lambda *_: got.append(True), arguments={"x-stream-offset": "first"})
        while not got and time.monotonic() - start < CAP:
            reader.process_data_events(time_limit=0.01)
        print(f"stream: a consumer at `first` receives a message after {time.monotonic() - start:.3f} s")
        for each in (reader, poller, connection):
            each.close()
    finally:
        requests.delete(f"{api}/vhosts/{vhost}", auth=AUTH, timeout=30)


if __name__ == "__main__":
    main()
