"""No text can leave a string literal of the rendered celeryconfig: arbitrary names, routing keys, task
patterns, argument values, vhosts and file names render to a module that imports in a fresh interpreter,
runs nothing and gives every value back equal."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.celery.render import _dead_letters, _retries, _retry_queues, render
from provisioner.topology.model import (
    Binding,
    CelerySettings,
    DeadLetter,
    Exchange,
    Queue,
    Retry,
    RetryQueue,
    TaskRoute,
    Topology,
    VHost,
)

PAYLOADS = [
    "\nimport os; os.system('touch {sentinel}')\n#",
    "\r__import__('os').system('touch {sentinel}')\r",
    "'''\nopen({sentinel!r}, 'w')\n'''",
    '")\nopen({sentinel!r}, "w")#',
    "\u2028open({sentinel!r}, 'w')\u2029",
    "\x85\x0b\x0c\x1c\u202e\x00\\",
    "\\\n",
    "{{'a': 1}}",
]
# Arbitrary text (every category but surrogates, which validate refuses as not UTF-8) and payloads.
TEXT = st.one_of(st.text(max_size=30), st.sampled_from(PAYLOADS), st.text(alphabet="'\"\\\n\r#\u2028", max_size=8))
VALUES = st.one_of(TEXT, st.integers(-(2**63), 2**63 - 1), st.booleans(), st.lists(TEXT, max_size=2))

# Imports each module given on the command line and prints what a worker reads of it, as Python literals.
READER = r"""
import importlib.util, sys
import kombu  # imported and used before the hook: only what the rendered modules do is heard
kombu.Queue("q", kombu.Exchange("x"), routing_key="k", queue_arguments={})
seen = []
RUNS = ("os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.remove", "os.rename", "os.rmdir",
        "os.mkdir", "os.chmod", "os.kill", "os.putenv", "subprocess.Popen", "socket.", "shutil.",
        "urllib.", "http.", "builtins.input", "webbrowser.")
def hear(event, args):
    if event.startswith(RUNS) or (event == "open" and args[1] not in (None, "r", "rb")):
        seen.append(event)
sys.addaudithook(hear)
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location("rendered", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = sorted(n for n in vars(module) if not n.startswith("__"))
    queues = [(q.name, q.exchange.name, q.exchange.type, q.routing_key, q.queue_arguments) for q in module.task_queues]
    data = {name: getattr(module, name) for name in names if name not in ("task_queues", "os", "Exchange", "Queue")}
    print(repr({"names": names, "queues": queues, "data": data, "events": seen}))
"""


@st.composite
def topologies(draw: st.DrawFn) -> tuple[Topology, list[str]]:
    """A topology model built directly (no validation): whatever text reaches render."""
    vhost = draw(TEXT)
    names = draw(st.lists(TEXT, min_size=1, max_size=3, unique=True))
    exchange = draw(TEXT)
    arguments = draw(st.dictionaries(TEXT, VALUES, max_size=3))
    queues = tuple(Queue(vhost, name, arguments=arguments) for name in names)
    routing_key = draw(TEXT)
    bindings = tuple(Binding(vhost, exchange, name, routing_key=routing_key) for name in names)
    dead_letter_key = draw(TEXT)
    dead_letters = (DeadLetter(vhost, names[0], exchange, dead_letter_key, names[-1]),)
    patterns = draw(st.lists(TEXT, min_size=1, max_size=3, unique=True))
    consume = draw(st.sampled_from(["celery", "foreign"]))
    tasks = tuple(
        TaskRoute(pattern, names[i % len(names)], consume if i == 0 else "celery", Retry(), None)
        for i, pattern in enumerate(patterns)
    )
    retry_queues = (RetryQueue(vhost, names[0], 1000, draw(TEXT)),)
    topology = Topology(
        vhosts=(VHost(vhost),),
        exchanges=(Exchange(vhost, exchange, draw(TEXT)),),
        queues=queues,
        bindings=bindings,
        dead_letters=dead_letters,
        retry_queues=retry_queues,
        tasks=tasks,
        celery=CelerySettings(vhost, names[0]),
    )
    return topology, draw(st.lists(TEXT, min_size=1, max_size=2))


def expected(topology: Topology) -> dict[str, Any]:
    """What the module must say, computed from the model (not from the rendered text)."""
    vhost = topology.celery.vhost
    part = topology.in_vhost(vhost)
    return {
        "task_routes": {r.pattern: {"queue": r.work_queue(topology.celery.default_queue)} for r in part.tasks},
        "provisioner_foreign_consumers": {r.queue: r.pattern for r in part.tasks if r.consume == "foreign"},
        "provisioner_dead_letters": _dead_letters(topology, vhost),
        "provisioner_task_retries": _retries(part),
        "provisioner_retry_queues": _retry_queues(part),
        "task_default_queue": topology.celery.default_queue,
    }


def comment_says(text: str, label: str, value: str) -> bool:
    """The comment line names ``value``: as written when printable, else as a Python literal of it."""
    line = next(line for line in text.splitlines() if line.startswith(f"# {label}: "))
    written = line[len(f"# {label}: ") :]
    return written == value if value.isprintable() else ast.literal_eval(written) == value


@settings(max_examples=12, deadline=None)
@given(cases=st.lists(topologies(), min_size=4, max_size=4))
def test_arbitrary_text_renders_to_a_module_that_runs_nothing_and_gives_every_value_back(
    cases: list[tuple[Topology, list[str]]], tmp_path_factory: Any
) -> None:
    folder = tmp_path_factory.mktemp("rendered")
    sentinel = str(folder / "RAN")
    paths, texts = [], []
    for index, (topology, sources) in enumerate(cases):
        sources = [s.replace("{sentinel}", sentinel) for s in sources]
        text = render(topology, sources=sources)
        path = folder / f"config{index}.py"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
        texts.append(text)
        assert comment_says(text, "Source", ", ".join(sources))
        assert comment_says(text, "Vhost", topology.celery.vhost)
    result = subprocess.run([sys.executable, "-c", READER, *paths], capture_output=True, text=True, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert not Path(sentinel).exists()
    for (topology, _), line in zip(cases, result.stdout.splitlines(), strict=True):
        read = ast.literal_eval(line)
        assert read["events"] == []  # nothing ran: no process, no file written, no socket
        for name, value in expected(topology).items():
            assert read["data"][name] == value, name
        consumed = {q.name: q for q in topology.queues}
        assert {name for name, *_ in read["queues"]} <= set(consumed)
        for name, _exchange, _type, _key, arguments in read["queues"]:
            assert arguments == consumed[name].declare_arguments
        assert read["names"] == sorted(json.loads(BASELINE_NAMES))


# The module's names: a value that escaped its literal would add one (or fail the import).
BASELINE_NAMES = json.dumps(
    [
        "Exchange",
        "Queue",
        "broker_channel_error_retry",
        "broker_transport_options",
        "broker_url",
        "os",
        "provisioner_dead_letters",
        "provisioner_foreign_consumers",
        "provisioner_retry_queues",
        "provisioner_task_retries",
        "task_acks_late",
        "task_acks_on_failure",
        "task_acks_on_timeout",
        "task_create_missing_queues",
        "task_default_exchange",
        "task_default_queue",
        "task_default_routing_key",
        "task_queues",
        "task_reject_on_worker_lost",
        "task_routes",
        "worker_prefetch_multiplier",
    ]
)
