"""Two builds of `provision` side by side: the same command, run in turn (A B A B ...), medians of each.

    python bench/versus.py --a OLD/.venv/bin/provision --b .venv/bin/provision --runs 9 -- plan topology.yaml

A before/after comparison taken this way sees the same moment of a shared machine for both:
each figure is a whole process (wall time from start to exit, CPU time user + system from
``wait4``), and the B/A ratio is taken pair by pair. Environment variables (PROVISION_AMQP_URL,
PROVISION_MANAGEMENT_URL, PROVISION_LIVE_READ) pass through to both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time


def once(command: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit status of one run."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="the `provision` script of the first build (before)")
    parser.add_argument("--b", required=True, help="the `provision` script of the second build (after)")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then the provision arguments")
    options = parser.parse_args()
    arguments = options.arguments[1:] if options.arguments[:1] == ["--"] else options.arguments
    runs: dict[str, list[tuple[float, float, int]]] = {"a": [], "b": []}
    for script in (options.a, options.b):  # one unmeasured run each: caches, compiled modules
        once([script, *arguments])
    for _ in range(options.runs):
        runs["a"].append(once([options.a, *arguments]))
        runs["b"].append(once([options.b, *arguments]))
    print(f"provision {' '.join(arguments)}   ({options.runs} runs each, in turn; medians)")
    for label, script in (("a", options.a), ("b", options.b)):
        walls, cpus, codes = zip(*runs[label], strict=True)
        print(
            f"  {label}  wall {statistics.median(walls):.3f} s  cpu {statistics.median(cpus):.3f} s  "
            f"exit {sorted(set(codes))}  {script}"
        )
    wall_ratio = statistics.median(b[0] / a[0] for a, b in zip(runs["a"], runs["b"], strict=True))
    cpu_ratio = statistics.median(b[1] / a[1] for a, b in zip(runs["a"], runs["b"], strict=True) if a[1])
    print(f"  b/a  wall {wall_ratio:.3f}  cpu {cpu_ratio:.3f}  (pair by pair)")


if __name__ == "__main__":
    main()
