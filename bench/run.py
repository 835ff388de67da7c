"""Benchmark `provision` as users run it: whole processes, beside what the broker itself does.

    python bench/run.py                          # N = 500, 2000, 8000; 3 rounds
    python bench/run.py --sizes 2000 --rounds 5
    python bench/run.py --sizes 50 --rounds 1    # a quick smoke run

Each command runs as a subprocess of the `provision` script next to this Python
(wall time, CPU time and peak RSS of that one process, from wait4), on fresh
vhosts of the real broker (PROVISION_AMQP_URL / PROVISION_MANAGEMENT_URL, default
guest@localhost) that are deleted afterwards. Beside them, in the same round: the
broker's own POST /api/definitions import of the same objects into a fresh vhost,
one GET /api/definitions of the applied vhost, and a per-object refresh (sampled).
A last run of each command with PROVISION_PROFILE=1 shows where its time goes.
At the end, `provision validate` of one file of --big-mib MiB (5 by default, the
loader's limit): its time and peak memory.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pika
import requests

import provisioner
from provisioner.broker.endpoints import Endpoints
from provisioner.topology import load
from provisioner.topology.documents import MAX_FILE_BYTES
from provisioner.topology.model import Topology

TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else ""  # GNU time: the peak RSS of one process
FLOOR = Path(__file__).with_name("floor.py")
REFRESH_SAMPLE = 300  # objects read one by one for the per-object refresh; the rest is extrapolated
PROFILED = ("validate", "render", "apply (fresh)", "plan (no-op)", "apply (no-op)")


def topology_text(size: int, vhost: str) -> str:
    """N queues, each with a binding and a dead-letter pair: about 5N objects."""
    lines = ["version: 1", f"vhost: {vhost}", "exchanges:", "  work: {type: topic}", "queues:"]
    for index in range(size):
        lines += [f"  q{index:05d}:", f"    bindings: [{{exchange: work, routing_key: jobs.{index}}}]"]
        lines += ["    dead_letter: true"]
    return "\n".join(lines) + "\n"


def compact_text(size_bytes: int, vhost: str) -> str:
    """As many queues with a dead-letter pair as fit in ``size_bytes``, one short line each (about 4 objects a line)."""
    parts = ["version: 1", f"vhost: {vhost}", "queues:"]
    used = sum(len(part) + 1 for part in parts)
    index = 0
    while True:
        line = f"  q{index:06d}: {{dead_letter: true}}"
        if used + len(line) + 1 > size_bytes:
            return "\n".join(parts) + "\n"
        parts.append(line)
        used += len(line) + 1
        index += 1


def object_count(topology: Topology) -> int:
    return len(topology.exchanges) + len(topology.queues) + len(topology.bindings) + len(topology.policies)


def definitions(topology: Topology) -> dict[str, object]:
    """The same objects in the broker's own definitions format."""
    return {
        "exchanges": [
            {"name": x.name, "type": x.type, "durable": x.durable, "auto_delete": x.auto_delete}
            | {"internal": x.internal, "arguments": x.arguments}
            for x in topology.exchanges
        ],
        "queues": [
            {"name": q.name, "durable": q.durable, "auto_delete": q.auto_delete, "arguments": q.declare_arguments}
            for q in topology.queues
        ],
        "bindings": [
            {"source": b.source, "destination": b.destination, "destination_type": b.destination_type}
            | {"routing_key": b.routing_key, "arguments": b.arguments}
            for b in topology.bindings
        ],
        "policies": [],
    }


@dataclass
class Sample:
    wall: float
    cpu: float = 0.0
    rss_mb: float = 0.0


@dataclass
class Row:
    """One command or baseline: a sample per round."""

    label: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    def median(self, what: str = "wall") -> float:
        return statistics.median(getattr(sample, what) for sample in self.samples)


class Runner:
    """Runs `provision` as a user does, and the management calls the baselines need."""

    def __init__(self, endpoints: Endpoints, folder: Path, prefix: str = "bench") -> None:
        self.endpoints, self.folder, self.prefix = endpoints, folder, prefix
        beside = Path(sys.executable).parent / "provision"
        self.provision = str(beside) if beside.exists() else (shutil.which("provision") or "provision")
        self.session = requests.Session()
        self.session.auth = endpoints.management_auth
        self.session.verify = endpoints.verify
        self.base = endpoints.management_base
        self.vhosts: list[str] = []

    def command(
        self,
        *arguments: str,
        profile: bool = False,
        env: dict[str, str] | None = None,
        program: list[str] | None = None,
    ) -> tuple[Sample, str]:
        """One process: wall time from start to exit, its CPU time (wait4) and peak RSS (/usr/bin/time).

        ``program`` runs instead of `provision` (bench/floor.py's floors).

        wait4's peak RSS would count this benchmark's own memory (a child inherits its
        parent's high-water mark across exec), so the small /usr/bin/time starts `provision`.
        """
        environment = {key: value for key, value in os.environ.items() if key != "PROVISION_PROFILE"}
        if profile:
            environment["PROVISION_PROFILE"] = "1"
        environment |= env or {}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as rss:
            wrapper = [TIME, "-o", rss.name, "-f", "%M"] if TIME else []
            started = time.perf_counter()
            process = subprocess.Popen(  # no terminal on stdin: apply never stops to ask
                [*wrapper, *(program or [self.provision]), *arguments],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=environment,
            )
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
            peak_kb = rss.read().decode().strip().splitlines()[-1:] if TIME else []
        if process.returncode not in (0, 2):
            what = " ".join([*(program or ["provision"]), *arguments])
            raise SystemExit(f"{what} failed ({process.returncode}): {stderr[-500:]}")
        rss_mb = int(peak_kb[0]) / 1024 if peak_kb and peak_kb[0].isdigit() else 0.0
        return Sample(wall, usage.ru_utime + usage.ru_stime, rss_mb), stderr

    def call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        response = self.session.request(method, f"{self.base}/api/{path}", timeout=600, **kwargs)  # type: ignore[arg-type]
        response.raise_for_status()
        return response

    def timed_call(self, method: str, path: str, **kwargs: object) -> Sample:
        started = time.perf_counter()
        self.call(method, path, **kwargs).content  # noqa: B018  (the whole answer, read)
        return Sample(time.perf_counter() - started)

    def kinds_in_parallel(self, vhost: str) -> Sample:
        """The per-kind lists a plan reads (broker/reads.py), side by side on sessions of their own."""
        from provisioner.broker.reads import LISTS

        def get(kind: str) -> None:
            with requests.Session() as session:
                session.auth, session.verify = self.session.auth, self.session.verify
                url = f"{self.base}/api/{kind}/{quote(vhost, safe='')}"
                session.get(url, params=LISTS[kind], timeout=600).raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(len(LISTS)) as pool:
            list(pool.map(get, LISTS))
        return Sample(time.perf_counter() - started)

    def new_vhost(self, create: bool) -> str:
        name = f"{self.prefix}-{uuid.uuid4().hex[:8]}"
        self.vhosts.append(name)
        if create:
            self.call("PUT", f"vhosts/{quote(name, safe='')}", json={})
            body = {"configure": ".*", "write": ".*", "read": ".*"}
            user = quote(self.endpoints.amqp_user, safe="")
            self.call("PUT", f"permissions/{quote(name, safe='')}/{user}", json=body)
        return name

    def cleanup(self) -> None:
        for name in self.vhosts:
            try:
                self.session.delete(f"{self.base}/api/vhosts/{quote(name, safe='')}", timeout=600)
            except requests.RequestException as error:  # say so, and go on deleting the others
                print(f"could not delete vhost {name}: {type(error).__name__}; delete it by hand", file=sys.stderr)
        self.vhosts.clear()

    def write(self, size: int, vhost: str) -> str:
        path = self.folder / f"bench-{size}-{vhost}.yaml"
        path.write_text(topology_text(size, vhost))
        return str(path)


def one_round(runner: Runner, size: int, rows: dict[str, Row], profiles: dict[str, str], profile: bool) -> None:
    vhost = runner.new_vhost(create=False)
    file = runner.write(size, vhost)
    rendered = str(runner.folder / "celeryconfig.py")

    def run(label: str, *arguments: str) -> None:
        sample, _ = runner.command(*arguments)
        rows[label].samples.append(sample)
        if profile and label in PROFILED:
            profiles[label] = _profile_line(runner.command(*arguments, profile=True)[1])

    run("provision --version", "--version")
    run("validate", "validate", file)
    run("render", "render", file, "-o", rendered)
    sample, _ = runner.command("apply", file)  # fresh: the vhost does not exist yet
    rows["apply (fresh)"].samples.append(sample)
    if profile:
        profiles["apply (fresh)"] = ""  # a fresh apply runs once per vhost; profiled below on a vhost of its own
    # The GET just before the plan, so both meet the broker in the same state (it is still settling after the apply).
    rows["GET /api/definitions"].samples.append(runner.timed_call("GET", f"definitions/{quote(vhost, safe='')}"))
    rows["GET per kind, in parallel"].samples.append(runner.kinds_in_parallel(vhost))
    run("plan (no-op)", "plan", file)
    sample, _ = runner.command("plan", file, env={"PROVISION_LIVE_READ": "definitions"})
    rows["plan (no-op, by definitions)"].samples.append(sample)
    run("apply (no-op)", "apply", file)
    run("export --vhost", "export", "--vhost", vhost, "--force", "-o", str(runner.folder / "exported.yaml"))
    run("dlq list", "dlq", "list", file)
    floor = [sys.executable, str(FLOOR)]
    rows["floor: a process, one GET"].samples.append(runner.command("get", vhost, program=floor)[0])
    rows["floor: dlq list"].samples.append(runner.command("dlq", file, vhost, program=floor)[0])

    topology = load([file])
    names = [q.name for q in topology.queues][:REFRESH_SAMPLE]
    started = time.perf_counter()
    for name in names:
        runner.call("GET", f"queues/{quote(vhost, safe='')}/{quote(name, safe='')}")
    total = object_count(topology)
    rows["per-object GETs"].samples.append(Sample((time.perf_counter() - started) * total / len(names)))
    rows["per-object GETs"].note = f"{len(names)} GETs timed, extrapolated to {total}"

    connection = pika.BlockingConnection(runner.endpoints.amqp_parameters(vhost))
    channel = connection.channel()
    for index in range(3):
        channel.queue_unbind(f"q{index:05d}", "work", f"jobs.{index}")
    connection.close()
    run("plan (3 bindings drifted)", "plan", file)

    imported = runner.new_vhost(create=True)
    body = definitions(load([runner.write(size, imported)]))
    rows["import POST /api/definitions"].samples.append(
        runner.timed_call("POST", f"definitions/{quote(imported, safe='')}", json=body)
    )
    if profile:
        again = runner.write(size, runner.new_vhost(create=False))
        profiles["apply (fresh)"] = _profile_line(runner.command("apply", again, profile=True)[1])
    runner.cleanup()


def _profile_line(stderr: str) -> str:
    return next((line[len("profile: ") :] for line in stderr.splitlines() if line.startswith("profile: ")), "")


LABELS = (
    "provision --version",
    "validate",
    "render",
    "apply (fresh)",
    "import POST /api/definitions",
    "plan (no-op)",
    "apply (no-op)",
    "GET /api/definitions",
    "GET per kind, in parallel",
    "plan (no-op, by definitions)",
    "plan (3 bindings drifted)",
    "export --vhost",
    "dlq list",
    "floor: a process, one GET",
    "floor: dlq list",
    "per-object GETs",
)
BASELINE = {  # what each row is compared with, in the same round
    "validate": "provision --version",
    "render": "provision --version",
    "apply (fresh)": "import POST /api/definitions",
    "plan (no-op)": "GET /api/definitions",
    "apply (no-op)": "GET /api/definitions",
    "GET per kind, in parallel": "GET /api/definitions",
    "plan (no-op, by definitions)": "GET /api/definitions",
    "plan (3 bindings drifted)": "GET /api/definitions",
    "export --vhost": "GET /api/definitions",
    "dlq list": "GET /api/definitions",
    "floor: a process, one GET": "GET /api/definitions",
    "floor: dlq list": "GET /api/definitions",
}
FLOORS = {  # bench/floor.py: what no Python tool could beat on this machine, for the rows that miss a target
    "plan (no-op)": "floor: a process, one GET",
    "export --vhost": "floor: a process, one GET",
    "dlq list": "floor: dlq list",
}


def measure(runner: Runner, size: int, rounds: int) -> tuple[dict[str, Row], dict[str, str]]:
    rows = {label: Row(label) for label in LABELS}
    profiles: dict[str, str] = {}
    try:
        for number in range(rounds):
            one_round(runner, size, rows, profiles, profile=number == rounds - 1)
    finally:
        runner.cleanup()
    return rows, profiles


def print_table(size: int, objects: int, rows: dict[str, Row], profiles: dict[str, str], rounds: int) -> None:
    print(f"\nN = {size} queues ({objects} objects), median of {rounds} round(s)")
    print(f"{'':30} {'wall s':>8} {'cpu s':>7} {'peak MB':>8} {'ratio':>6}  compared with")
    for label, row in rows.items():
        base = BASELINE.get(label)
        ratio = f"{row.median() / rows[base].median():6.2f}" if base else f"{'':6}"
        cpu = f"{row.median('cpu'):7.2f}" if row.median("cpu") else f"{'':7}"
        rss = f"{row.median('rss_mb'):8.1f}" if row.median("rss_mb") else f"{'':8}"
        print(f"{label:30} {row.median():8.3f} {cpu} {rss} {ratio}  {base or row.note}")
    print("where the time goes (PROVISION_PROFILE=1, seconds; the rest of the wall time is start-up and imports):")
    for label in PROFILED:
        print(f"  {label:22} {profiles.get(label, '')}")


def header(runner: Runner) -> str:
    overview = runner.call("GET", "overview").json()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; RabbitMQ {overview.get('rabbitmq_version')} "
        f"(Erlang {overview.get('erlang_version')}) at {runner.base}\n"
        f"{os.cpu_count()} cores, {memory:.0f} GiB, load average {load}; Python {platform.python_version()} "
        f"({platform.python_implementation()}); {runner.provision}"
    )


def targets(results: dict[int, tuple[int, dict[str, Row]]]) -> list[tuple[str, bool, str]]:
    def ratio(size: int, label: str, base: str) -> float:
        rows = results[size][1]
        return rows[label].median() / rows[base].median()

    checks: list[tuple[str, bool, str]] = []
    if 2000 in results:
        rows = results[2000][1]
        for label in ("validate", "render"):
            value = ratio(2000, label, "provision --version")
            checks.append((f"{label} <= 2.5x --version (N=2000)", value <= 2.5, f"{value:.2f}"))
        version = rows["provision --version"].median()
        checks.append(("--version < 0.25 s", version < 0.25, f"{version:.3f} s"))
    for size, most in ((2000, 1.5), (8000, 0.8)):  # issue 29
        if size in results:
            value = ratio(size, "plan (no-op)", "GET /api/definitions")
            checks.append((f"no-op plan <= {most}x one GET (N={size})", value <= most, f"{value:.2f}"))
    for size in (2000, 8000):
        if size in results:
            value = ratio(size, "apply (fresh)", "import POST /api/definitions")
            checks.append((f"fresh apply <= 0.6x the broker's import (N={size})", value <= 0.6, f"{value:.2f}"))
    for label, most in (("export --vhost", 1.5), ("dlq list", 2.0)):  # issue 29, at N=8000
        if 8000 in results:
            value = ratio(8000, label, "GET /api/definitions")
            checks.append((f"{label} <= {most}x one GET (N=8000)", value <= most, f"{value:.2f}"))
    for size, (_, rows) in sorted(results.items()):
        for label, floor in FLOORS.items():
            value = rows[label].median() / rows[floor].median()
            checks.append((f"(against bench/floor.py) {label} / {floor} (N={size})", True, f"{value:.2f}"))
    if 8000 in results:
        memory = results[8000][1]["plan (no-op)"].median("rss_mb")
        checks.append(("no-op plan peak memory < 250 MB (N=8000)", memory < 250, f"{memory:.0f} MB"))
    if 2000 in results and 8000 in results:
        for label in BASELINE:
            if label in FLOORS.values():
                continue  # a floor is the broker's and the interpreter's: listed with the broker's own below
            growth = results[8000][1][label].median() / results[2000][1][label].median()
            checks.append((f"{label}: N=2000 -> 8000 grows <= 4.4x", growth <= 4.4, f"{growth:.2f}x"))
        for label in ("plan (no-op)", "apply (no-op)", "export --vhost", "dlq list"):  # ours: the CPU
            growth = results[8000][1][label].median("cpu") / results[2000][1][label].median("cpu")
            checks.append((f"(our CPU time) {label}: N=2000 -> 8000", True, f"{growth:.2f}x"))
        for label in ("import POST /api/definitions", "GET /api/definitions", *dict.fromkeys(FLOORS.values())):
            growth = results[8000][1][label].median() / results[2000][1][label].median()
            checks.append((f"(the broker's own) {label}: N=2000 -> 8000", True, f"{growth:.2f}x"))
    return checks


def big_file(runner: Runner, mib: float) -> tuple[Sample, str, int, int]:
    """`provision validate` of one file of ``mib`` MiB (capped just under the loader's limit): time, memory, profile."""
    size = min(int(mib * 1024 * 1024), MAX_FILE_BYTES - 1024)
    path = runner.folder / "big.yaml"
    text = compact_text(size, "bench-big")
    path.write_text(text)
    sample, _ = runner.command("validate", str(path))
    _, stderr = runner.command("validate", str(path), profile=True)
    return sample, _profile_line(stderr), len(text), text.count("\n  q")


def print_big(sample: Sample, profile: str, size: int, queues: int) -> list[tuple[str, bool, str]]:
    print(f"\nvalidate of one {size / 2**20:.2f} MiB file ({queues:,} queues, 4 objects each):")
    print(f"  wall {sample.wall:.2f} s, cpu {sample.cpu:.2f} s, peak {sample.rss_mb:.0f} MB; {profile}")
    fits = sample.wall < 10 and (sample.rss_mb < 600 or not sample.rss_mb)
    return [("a 5 MiB file validates in < 10 s and < 600 MB", fits, f"{sample.wall:.2f} s, {sample.rss_mb:.0f} MB")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,2000,8000", help="comma-separated queue counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefix", default="bench", help="of the vhosts it makes (and deletes)")
    parser.add_argument("--big-mib", type=float, default=5.0, help="validate one file this big at the end (0: skip)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    # An installed package has its bytecode compiled (pip does it); an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would compile every module of ours in every process instead.
    compileall.compile_dir(str(Path(provisioner.__file__).parent), quiet=1)
    with tempfile.TemporaryDirectory() as folder:
        runner = Runner(Endpoints.from_environment(), Path(folder), args.prefix)
        print(header(runner))
        results: dict[int, tuple[int, dict[str, Row]]] = {}
        for size in sizes:
            rows, profiles = measure(runner, size, args.rounds)
            objects = object_count(load([runner.write(size, "x")]))
            results[size] = (objects, rows)
            print_table(size, objects, rows, profiles, args.rounds)
            sys.stdout.flush()
        big = print_big(*big_file(runner, args.big_mib)) if args.big_mib > 0 else []
    print("\nper object (wall, microseconds):")
    for size, (objects, rows) in results.items():
        cells = "  ".join(f"{label} {rows[label].median() * 1e6 / objects:6.1f}" for label in BASELINE)
        print(f"  N={size:<6} {cells}")
    checks = targets(results) + big
    if checks:
        print("\ntargets:")
        for name, ok, value in checks:
            verdict = "info" if name.startswith("(") else "PASS" if ok else "FAIL"
            print(f"  {verdict:4}  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
