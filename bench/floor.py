"""What the interpreter and the broker allow: the least a Python tool must do for each measured command.

    python bench/floor.py get VHOST              # one GET of the definitions, decoded: below any plan or export
    python bench/floor.py dlq FILE VHOST         # count each queue's '.dead' twin over AMQP, pipelined

bench/run.py runs each as a whole process beside `provision`, in the same round, so
a ratio that misses its target can be read against what no Python tool could beat
on this machine: the interpreter's start, the imports these few steps need, the
broker's own answers. Nothing here parses the topology (dlq takes the queue names
from the benchmark's own file by a regular expression), checks, compares or writes
anything: it is a floor, not a rival. PROVISION_AMQP_URL / PROVISION_MANAGEMENT_URL as for run.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
from urllib.parse import quote, urlsplit

LANES = 32  # channels with a passive declare in flight, as broker/passive.py


def _management() -> tuple[str, tuple[str, str]]:
    url = urlsplit(os.environ.get("PROVISION_MANAGEMENT_URL", "http://guest:guest@localhost:15672"))
    return f"{url.scheme}://{url.hostname}:{url.port or 15672}", (url.username or "guest", url.password or "guest")


def _definitions(vhost: str) -> dict[str, object]:
    import requests

    base, auth = _management()
    response = requests.get(f"{base}/api/definitions/{quote(vhost, safe='')}", auth=auth, timeout=600)
    response.raise_for_status()
    return json.loads(response.content)  # type: ignore[no-any-return]


def get(vhost: str) -> None:
    """The interpreter, requests and the broker's export of the vhost: what every plan or export waits for."""
    _definitions(vhost)


def dlq(file: str, vhost: str) -> None:
    """Every dead-letter queue's ready count, passive declares pipelined on LANES channels of one connection."""
    import pika

    with open(file, encoding="utf-8") as stream:
        names = [f"{name}.dead" for name in re.findall(r"^  (q\d+):$", stream.read(), re.MULTILINE)]
    url = os.environ.get("PROVISION_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    parameters = pika.URLParameters(url)
    parameters.virtual_host = vhost
    connection = pika.BlockingConnection(parameters)
    counts: dict[str, int] = {}
    lanes = [names[index::LANES] for index in range(LANES)]

    def start(lane: list[str]) -> None:
        def opened(channel: object) -> None:
            def next_one(frame: object = None, name: str = "") -> None:
                if name:
                    counts[name] = frame.method.message_count  # type: ignore[attr-defined]
                if lane:
                    following = lane.pop()
                    channel.queue_declare(following, passive=True, callback=lambda f: next_one(f, following))  # type: ignore[attr-defined]

            next_one()

        connection._impl.channel(on_open_callback=opened)

    for lane in lanes:
        if lane:
            start(lane)
    connection._flush_output(lambda: len(counts) == len(names))  # the wait of pika's blocking commands
    print(f"{len(counts)} queues, {sum(counts.values())} messages")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"get": get, "dlq": dlq}[command](*arguments)
