"""Benchmark provisioner against what the broker itself and a naive tool can do.

    python bench/run.py                      # N = 500, 1000, 2000, 4000; 3 rounds each
    python bench/run.py --sizes 2000 --rounds 5
    python bench/run.py --quick              # N = 200, 500; 1 round

Every measurement uses fresh vhosts on the real broker (PROVISION_AMQP_URL /
PROVISION_MANAGEMENT_URL, default guest@localhost), deleted afterwards.
Prints one table: medians over rounds, ratios, request and declaration counts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote

import pika
import requests

from provisioner.apply import ApplyOptions, converge, make_plan
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.management import Management
from provisioner.topology import load
from provisioner.topology.model import Topology

REFRESH_SAMPLE = 500  # objects read one by one for the per-object refresh; the rest is extrapolated


def topology_text(size: int, vhost: str) -> str:
    """N queues, each with a binding and a dead-letter pair: about 5N objects."""
    lines = ["version: 1", f"vhost: {vhost}", "exchanges:", "  work: {type: topic}", "queues:"]
    for index in range(size):
        lines += [f"  q{index:05d}:", f"    bindings: [{{exchange: work, routing_key: jobs.{index}}}]"]
        lines += ["    dead_letter: true"]
    return "\n".join(lines) + "\n"


def desired(size: int, vhost: str, folder: Path) -> Topology:
    path = folder / f"bench-{size}.yaml"
    path.write_text(topology_text(size, vhost))
    return load([path])


def object_count(topology: Topology) -> int:
    return len(topology.exchanges) + len(topology.queues) + len(topology.bindings) + len(topology.policies)


class Broker:
    """The few management calls the baselines need, counted."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.session = requests.Session()
        self.session.auth = endpoints.management_auth
        self.base = endpoints.management_base
        self.requests = 0

    def call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        self.requests += 1
        response = self.session.request(method, f"{self.base}/api/{path}", timeout=300, **kwargs)  # type: ignore[arg-type]
        response.raise_for_status()
        return response

    def create_vhost(self, vhost: str) -> None:
        self.call("PUT", f"vhosts/{quote(vhost, safe='')}", json={})
        user = self.endpoints.amqp_user
        body = {"configure": ".*", "write": ".*", "read": ".*"}
        self.call("PUT", f"permissions/{quote(vhost, safe='')}/{quote(user, safe='')}", json=body)

    def delete_vhost(self, vhost: str) -> None:
        self.session.delete(f"{self.base}/api/vhosts/{quote(vhost, safe='')}", timeout=300)


@contextmanager
def fresh_vhost(broker: Broker) -> Iterator[str]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        broker.delete_vhost(name)


def definitions(topology: Topology) -> dict[str, object]:
    """The same objects in the broker's own definitions format."""
    return {
        "exchanges": [
            {
                "name": x.name,
                "type": x.type,
                "durable": x.durable,
                "auto_delete": x.auto_delete,
                "internal": x.internal,
                "arguments": x.arguments,
            }
            for x in topology.exchanges
        ],
        "queues": [
            {"name": q.name, "durable": q.durable, "auto_delete": q.auto_delete, "arguments": q.declare_arguments}
            for q in topology.queues
        ],
        "bindings": [
            {
                "source": b.source,
                "destination": b.destination,
                "destination_type": b.destination_type,
                "routing_key": b.routing_key,
                "arguments": b.arguments,
            }
            for b in topology.bindings
        ],
        "policies": [],
    }


def sequential_declare(endpoints: Endpoints, topology: Topology, vhost: str) -> int:
    """What a naive tool (or Celery at start) does: every declaration in turn on one channel."""
    connection = pika.BlockingConnection(endpoints.amqp_parameters(vhost))
    channel = connection.channel()
    count = 0
    for x in topology.exchanges:
        channel.exchange_declare(x.name, x.type, durable=x.durable, auto_delete=x.auto_delete, internal=x.internal)
        count += 1
    for q in topology.queues:
        channel.queue_declare(q.name, durable=q.durable, auto_delete=q.auto_delete, arguments=q.declare_arguments)
        count += 1
    for b in topology.bindings:
        channel.queue_bind(b.destination, b.source, b.routing_key, b.arguments or None)
        count += 1
    connection.close()
    return count


@dataclass
class Row:
    """One measurement: seconds per round, and what it cost."""

    label: str
    seconds: list[float] = field(default_factory=list)
    requests: int | None = None
    declarations: int | None = None
    writes: int | None = None
    memory_mb: float | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def timed_apply(row: Row, topology: Topology, endpoints: Endpoints, workers: int) -> None:
    """One ``converge``: its time, and the requests, declarations and writes it made."""
    management = Management(endpoints)
    seconds, report = timed(lambda: converge(topology, endpoints, management, ApplyOptions(workers=workers)))
    row.seconds.append(seconds)
    row.requests, row.writes = management.requests_made, management.writes_made
    row.declarations = report.amqp_operations  # type: ignore[attr-defined]


def measure(size: int, rounds: int, endpoints: Endpoints, broker: Broker, folder: Path, workers: int) -> list[Row]:
    rows = {
        name: Row(name)
        for name in (
            "apply (ours, fresh)",
            "import POST /api/definitions",
            "sequential, one channel",
            "plan (ours, no-op)",
            "apply (ours, no-op)",
            "GET /api/definitions",
            "per-object GETs",
            "plan (ours, 3 bindings drifted)",
        )
    }
    for _ in range(rounds):
        with fresh_vhost(broker) as vhost:  # ours, fresh: the vhost does not exist yet
            topology = desired(size, vhost, folder)
            timed_apply(rows["apply (ours, fresh)"], topology, endpoints, workers)

            management = Management(endpoints)
            seconds, plan = timed(lambda: make_plan(topology, management))
            tracemalloc.start()  # a second, untimed plan for its peak memory (tracing slows it down)
            make_plan(topology, Management(endpoints))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert plan.is_empty, "the fresh apply converged"  # type: ignore[attr-defined]
            row = rows["plan (ours, no-op)"]
            row.seconds.append(seconds)
            row.requests, row.memory_mb = management.requests_made, peak / 1e6

            timed_apply(rows["apply (ours, no-op)"], topology, endpoints, workers)

            before = broker.requests
            seconds, _ = timed(lambda: broker.call("GET", f"definitions/{quote(vhost, safe='')}").json())
            rows["GET /api/definitions"].seconds.append(seconds)
            rows["GET /api/definitions"].requests = broker.requests - before

            sample = [q.name for q in topology.queues][:REFRESH_SAMPLE]
            before = broker.requests
            seconds, _ = timed(
                lambda: [broker.call("GET", f"queues/{quote(vhost, safe='')}/{quote(n, safe='')}") for n in sample]
            )
            total = object_count(topology)
            row = rows["per-object GETs"]
            row.seconds.append(seconds * total / len(sample))
            row.requests = total
            row.note = f"{len(sample)} GETs timed, extrapolated to {total}"

            connection = pika.BlockingConnection(endpoints.amqp_parameters(vhost))
            channel = connection.channel()
            for index in range(3):
                channel.queue_unbind(f"q{index:05d}", "work", f"jobs.{index}")
            connection.close()
            management = Management(endpoints)
            seconds, plan = timed(lambda: make_plan(topology, management))
            assert len(plan.changes) == 3  # type: ignore[attr-defined]
            row = rows["plan (ours, 3 bindings drifted)"]
            row.seconds.append(seconds)
            row.requests = management.requests_made

        with fresh_vhost(broker) as vhost:
            topology = desired(size, vhost, folder)
            broker.create_vhost(vhost)
            body = definitions(topology)
            before = broker.requests
            seconds, _ = timed(lambda: broker.call("POST", f"definitions/{quote(vhost, safe='')}", json=body))
            row = rows["import POST /api/definitions"]
            row.seconds.append(seconds)
            row.requests, row.declarations = broker.requests - before, 0

        with fresh_vhost(broker) as vhost:
            topology = desired(size, vhost, folder)
            broker.create_vhost(vhost)
            seconds, count = timed(lambda: sequential_declare(endpoints, topology, vhost))
            row = rows["sequential, one channel"]
            row.seconds.append(seconds)
            row.requests, row.declarations = 0, count  # type: ignore[assignment]
    return list(rows.values())


def header(endpoints: Endpoints, broker: Broker) -> str:
    overview = broker.call("GET", "overview").json()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"RabbitMQ {overview.get('rabbitmq_version')} (Erlang {overview.get('erlang_version')}) at "
        f"{endpoints.management_base}; {os.cpu_count()} cores, {memory:.0f} GiB; Python {platform.python_version()}, "
        f"pika {version('pika')}, requests {version('requests')}"
    )


def print_table(size: int, objects: int, rows: list[Row], rounds: int) -> dict[str, float]:
    by = {row.label: row for row in rows}
    print(f"\nN = {size} queues ({objects} objects), median of {rounds} round(s)")
    print(f"{'':34} {'seconds':>9} {'obj/s':>8} {'HTTP req':>9} {'AMQP ops':>9} {'writes':>7} {'peak MB':>8}")
    for row in rows:
        rate = (
            f"{objects / row.median:8.0f}"
            if "fresh" in row.label or "import" in row.label or "sequential" in row.label
            else f"{'':8}"
        )
        cells = [
            f"{row.median:9.3f}",
            rate,
            f"{row.requests if row.requests is not None else '':>9}",
            f"{row.declarations if row.declarations is not None else '':>9}",
            f"{row.writes if row.writes is not None else '':>7}",
            f"{row.memory_mb:8.1f}" if row.memory_mb is not None else f"{'':8}",
        ]
        print(f"{row.label:34} {' '.join(cells)}  {row.note}")
    ratios = {
        "apply/import": by["apply (ours, fresh)"].median / by["import POST /api/definitions"].median,
        "apply/sequential": by["apply (ours, fresh)"].median / by["sequential, one channel"].median,
        "plan/per-object": by["plan (ours, no-op)"].median / by["per-object GETs"].median,
    }
    print("ratios: " + ", ".join(f"{name} = {value:.2f}" for name, value in ratios.items()))
    return {
        **ratios,
        "plan_seconds": by["plan (ours, no-op)"].median,
        "plan_requests": float(by["plan (ours, no-op)"].requests or 0),
        "noop_declarations": float(by["apply (ours, no-op)"].declarations or 0),
        "noop_writes": float(by["apply (ours, no-op)"].writes or 0),
        "apply_seconds": by["apply (ours, fresh)"].median,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,1000,2000,4000", help="comma-separated queue counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=ApplyOptions().workers, help="apply's parallel connections")
    parser.add_argument("--quick", action="store_true", help="N = 200, 500; one round")
    args = parser.parse_args()
    sizes = [200, 500] if args.quick else [int(s) for s in args.sizes.split(",")]
    rounds = 1 if args.quick else args.rounds
    endpoints = Endpoints.from_environment()
    broker = Broker(endpoints)
    print(header(endpoints, broker))
    print(f"apply workers: {args.workers}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            rows = measure(size, rounds, endpoints, broker, Path(folder), args.workers)
            objects = object_count(desired(size, "x", Path(folder)))
            results[size] = (objects, print_table(size, objects, rows, rounds))
    print("\nlinear growth (fresh apply and no-op plan, per object):")
    for size, (objects, figures) in results.items():
        print(
            f"  N={size:5} objects={objects:6}  apply {figures['apply_seconds'] * 1e6 / objects:7.1f} us/object"
            f"  plan {figures['plan_seconds'] * 1e6 / objects:6.1f} us/object"
        )
    print("\ntargets:")
    at = results.get(2000) or results[max(results)]
    label = "N=2000" if 2000 in results else f"N={max(results)}"
    checks = [
        (f"fresh apply / import <= 1.0 ({label})", at[1]["apply/import"] <= 1.0, f"{at[1]['apply/import']:.2f}"),
        (f"no-op plan <= 3 requests per vhost ({label})", at[1]["plan_requests"] <= 3, f"{at[1]['plan_requests']:.0f}"),
        (f"no-op plan < 0.5 s ({label})", at[1]["plan_seconds"] < 0.5, f"{at[1]['plan_seconds']:.3f} s"),
        (
            "no-op apply: 0 declarations, 0 writes",
            at[1]["noop_declarations"] == 0 and at[1]["noop_writes"] == 0,
            f"{at[1]['noop_declarations']:.0f} / {at[1]['noop_writes']:.0f}",
        ),
    ]
    for name, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
