"""`provision validate`: every check with a good and a bad document, asserting line and path."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from provision_cli import write as write_file

from provisioner.cli import main
from provisioner.errors import TopologyInvalid
from provisioner.topology import load
from provisioner.topology.model import Binding, DeadLetter, Exchange, Policy, Queue

REPO = Path(__file__).resolve().parent.parent.parent


def write(tmp_path: Path, text: str, name: str = "topology.yaml") -> Path:
    return Path(write_file(tmp_path, text, name))


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ=environ or {})
    return [str(p).split(":", 1)[1] for p in caught.value.problems]


# (name, bad document, expected "LINE:COL: message fragment ... (at path)" pieces, the good fix)
BAD_DOCUMENTS = {
    "version": (
        """
        version: 2
        """,
        ["1:10:", "must be 1", "(at version)"],
    ),
    "unknown field": (
        """
        version: 1
        exchanges:
          x:
            type: direct
            colour: red
        """,
        ["5:5:", "unknown field 'colour'", "(at exchanges.x.colour)"],
    ),
    "exchange type": (
        """
        version: 1
        exchanges:
          x: {type: bogus}
        """,
        ["3:13:", "not an exchange type", "(at exchanges.x.type)"],
    ),
    "missing exchange type": (
        """
        version: 1
        exchanges:
          x: {durable: true}
        """,
        ["3:6:", "'type' is required", "(at exchanges.x)"],
    ),
    "binding to undefined exchange": (
        """
        version: 1
        queues:
          q:
            bindings:
              - exchange: nowhere
        """,
        ["5:19:", "exchange 'nowhere' is not defined", "(at queues.q.bindings[0].exchange)"],
    ),
    "task on undefined queue": (
        """
        version: 1
        queues:
          q: {}
        tasks:
          app.tasks.add: {queue: missing}
        """,
        ["5:26:", "queue 'missing' is not defined", "(at tasks.app.tasks.add.queue)"],
    ),
    "name too long": (
        f"""
        version: 1
        queues:
          {"q" * 256}: {{}}
        """,
        ["3:3:", "longer than 255 bytes", "(at queues.qqq"],
    ),
    "name too long in UTF-8 bytes": (
        f"""
        version: 1
        queues:
          {"é" * 128}: {{}}
        """,
        ["3:3:", "longer than 255 bytes"],
    ),
    "reserved for provisioner": (
        """
        version: 1
        queues:
          orders.provisioner-migrate: {}
        """,
        ["3:3:", "reserved by provisioner itself", "(at queues.orders.provisioner-migrate)"],
    ),
    "reserved amq prefix": (
        """
        version: 1
        exchanges:
          amq.mine: {type: direct}
        """,
        ["3:3:", "reserved", "(at exchanges.amq.mine)"],
    ),
    "default exchange": (
        """
        version: 1
        queues:
          q:
            bindings: [{exchange: ""}]
        """,
        ["4:27:", 'the default exchange ("") cannot be bound', "(at queues.q.bindings[0].exchange)"],
    ),
    "duplicate YAML key": (
        """
        version: 1
        queues:
          q: {}
          r: {}
          q: {max_length: 5}
        """,
        ["5:3:", "duplicate key 'q' (first at line 3)", "(at queues.q)"],
    ),
    "defined twice through dead-letter expansion": (
        """
        version: 1
        queues:
          work:
            dead_letter: true
          work.dead:
            type: quorum
        """,
        ["5:3:", "queue 'work.dead'", "defined twice", "dead_letter of queue 'work'", "(at queues.work.dead)"],
    ),
    "quorum not durable": (
        """
        version: 1
        queues:
          q:
            type: quorum
            durable: false
        """,
        ["5:14:", "always durable", "(at queues.q.durable)"],
    ),
    "stream auto-delete": (
        """
        version: 1
        queues:
          s:
            type: stream
            auto_delete: true
        """,
        ["5:18:", "cannot be auto_delete", "(at queues.s.auto_delete)"],
    ),
    "priority on quorum": (
        """
        version: 1
        queues:
          q:
            type: quorum
            max_priority: 10
        """,
        ["5:19:", "x-max-priority is not supported on quorum", "(at queues.q.max_priority)"],
    ),
    "priority on quorum through arguments": (
        """
        version: 1
        queues:
          q:
            type: quorum
            arguments: {x-max-priority: 10}
        """,
        ["5:33:", "x-max-priority is not supported on quorum", "(at queues.q.arguments.x-max-priority)"],
    ),
    "delivery limit on classic": (
        """
        version: 1
        queues:
          q:
            delivery_limit: 3
        """,
        ["4:21:", "x-delivery-limit is not supported on classic", "(at queues.q.delivery_limit)"],
    ),
    "at-least-once without reject-publish": (
        """
        version: 1
        queues:
          q:
            type: quorum
            dead_letter_strategy: at-least-once
            dead_letter: true
        """,
        ["5:27:", "needs overflow: reject-publish", "(at queues.q.dead_letter_strategy)"],
    ),
    "friendly field and argument both": (
        """
        version: 1
        queues:
          q:
            max_length: 5
            arguments: {x-max-length: 6}
        """,
        ["4:17:", "say the same thing", "(at queues.q.max_length)"],
    ),
    "x-queue-type in arguments": (
        """
        version: 1
        queues:
          q:
            arguments: {x-queue-type: quorum}
        """,
        ["4:31:", "belongs in the queue's 'type'", "(at queues.q.arguments.x-queue-type)"],
    ),
    "dead-letter cycle": (
        """
        version: 1
        exchanges:
          dlx: {type: direct}
        queues:
          a:
            bindings: [{exchange: dlx, routing_key: a}]
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: b}
          b:
            bindings: [{exchange: dlx, routing_key: b}]
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: a}
        """,
        ["5:3:", "dead-letter cycle: a -> b -> a", "(at queues.a)"],
    ),
    "dead_letter of the wrong shape": (
        """
        version: 1
        queues:
          q:
            dead_letter: 7
        """,
        ["4:18:", "dead_letter must be true, false or a mapping", "(at queues.q.dead_letter)"],
    ),
    "dead_letter mapping with an unknown key": (
        """
        version: 1
        queues:
          q:
            dead_letter: {via: policy, sufix: dlq}
        """,
        ["4:32:", "unknown field 'sufix'", "(at queues.q.dead_letter.sufix)"],
    ),
    "unset environment variable": (
        """
        version: 1
        vhost: ${NOT_SET_ANYWHERE}
        """,
        ["2:8:", "environment variable NOT_SET_ANYWHERE is not set", "(at vhost)"],
    ),
    "foreign consumer on a glob": (
        """
        version: 1
        queues:
          q: {}
        tasks:
          app.*: {queue: q, consume: foreign}
        """,
        ["5:30:", "name it exactly", "(at tasks.app.*.consume)"],
    ),
    "default queue missing": (
        """
        version: 1
        queues:
          work: {}
        celery:
          default_queue: celery
        """,
        ["5:18:", "default queue 'celery' is not defined", "(at celery.default_queue)"],
    ),
    "vhosts beside top-level queues": (
        """
        version: 1
        queues:
          q: {}
        vhosts:
          a: {}
        """,
        ["2:1:", "cannot stand beside 'vhosts'", "(at queues)"],
    ),
    "policy shadowing a queue's own policy": (
        """
        version: 1
        queues:
          billing:
            dead_letter: {via: policy}
        policies:
          everything:
            pattern: ".*"
            definition: {max-length: 5}
        """,
        ["7:14:", "applies only one policy to a queue", "(at policies.everything.pattern)"],
    ),
    "broker retries on a stream": (
        """
        version: 1
        queues:
          events: {type: stream}
        tasks:
          audit.record:
            queue: events
            retry: {via: broker}
        """,
        ["7:18:", "need a classic or quorum queue", "(at tasks.audit.record.retry.via)"],
    ),
    "broker retry longer than a TTL can be": (
        """
        version: 1
        queues:
          work: {}
        tasks:
          slow.task:
            queue: work
            retry: {via: broker, delay: 5000000, delay_max: 5000000}
        """,
        ["7:53:", "waits at most 4294967 s", "(at tasks.slow.task.retry.delay_max)"],
    ),
    "a retry queue clashing with a queue of the file": (
        """
        version: 1
        queues:
          work: {}
          work.retry.5s: {}
        tasks:
          t:
            queue: work
            retry: {via: broker, delay: 5, backoff: false}
        """,
        ["8:", "queue 'work.retry.5s' in vhost '/' is defined twice (by the broker retries of task 't')"],
    ),
    "bad policy regex": (
        """
        version: 1
        policies:
          p:
            pattern: "(unclosed"
            definition: {max-length: 5}
        """,
        ["4:14:", "not a regular expression", "(at policies.p.pattern)"],
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_DOCUMENTS))
def test_bad_document_names_line_and_path(tmp_path: Path, name: str) -> None:
    text, expected = BAD_DOCUMENTS[name]
    problems = problems_of(write(tmp_path, text))
    assert any(all(piece in problem for piece in expected) for problem in problems), problems


GOOD_DOCUMENTS = {
    "minimal": "version: 1\n",
    "built-in exchange binding": """
        version: 1
        queues:
          q:
            bindings: [{exchange: amq.topic, routing_key: "a.#"}]
        """,
    "explicit dead-letter queue defined by the user": """
        version: 1
        queues:
          work:
            dead_letter: {queue: parking, exchange: parking}
          parking:
            type: quorum
        """,
    "quorum at-least-once done right": """
        version: 1
        queues:
          q:
            type: quorum
            overflow: reject-publish
            dead_letter_strategy: at-least-once
            delivery_limit: 3
            dead_letter: true
        """,
    "seed-style shared DLX": """
        version: 1
        queues:
          a:
            dead_letter: {exchange: dlx, queue: dlq, routing_key: dead}
          b:
            dead_letter: {exchange: dlx, queue: dlq, routing_key: dead}
        """,
    "dead-lettering into the default exchange is no cycle": """
        version: 1
        queues:
          a:
            arguments: {x-dead-letter-exchange: "", x-dead-letter-routing-key: b}
          b: {}
        """,
}


@pytest.mark.parametrize("name", sorted(GOOD_DOCUMENTS))
def test_good_document_loads(tmp_path: Path, name: str) -> None:
    assert load([write(tmp_path, GOOD_DOCUMENTS[name])], environ={}).vhosts[0].name == "/"


def test_dead_letter_shorthand_expands_like_the_seed(tmp_path: Path) -> None:
    topology = load([REPO / "topologies" / "seed.yaml"], environ={})
    assert topology.queue("/", "celery") == Queue(
        "/",
        "celery",
        arguments={"x-dead-letter-exchange": "celery.dead", "x-dead-letter-routing-key": "celery.dead"},
    )
    assert topology.queue("/", "example.dead") == Queue("/", "example.dead")
    assert Exchange("/", "example.dead", "direct") in topology.exchanges
    assert Binding("/", "example.dead", "example.dead", "queue", "com.example.dead") in topology.bindings
    assert topology.dead_letter_of("/", "example") == DeadLetter(
        "/", "example", "example.dead", "com.example.dead", "example.dead"
    )


def test_dead_letter_via_policy_leaves_queue_arguments_alone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        queues:
          billing:
            type: quorum
            dead_letter: {via: policy, suffix: dlq}
            policy: {delivery-limit: 10}
        """,
    )
    topology = load([path], environ={})
    assert topology.queue("/", "billing") == Queue("/", "billing", "quorum")
    assert topology.queue("/", "billing.dlq") == Queue("/", "billing.dlq", "quorum")
    assert topology.policies == (
        Policy(
            "/",
            "provisioner.billing",
            "^billing$",
            {"delivery-limit": 10, "dead-letter-exchange": "billing.dlq", "dead-letter-routing-key": "billing.dlq"},
        ),
    )


def test_environment_interpolation_types_and_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        vhost: ${VHOST:-staging}
        queues:
          q:
            max_length: ${MAX_LENGTH}
            bindings: [{exchange: amq.topic, routing_key: "$${literal}"}]
        """,
    )
    topology = load([path], environ={"MAX_LENGTH": "5000"})
    assert topology.vhosts[0].name == "staging"
    assert topology.queues[0].arguments == {"x-max-length": 5000}
    assert topology.bindings[0].routing_key == "${literal}"
    assert load([path], environ={"MAX_LENGTH": "1", "VHOST": "prod"}).vhosts[0].name == "prod"


def test_a_variable_written_with_an_escape_is_interpolated_too(tmp_path: Path) -> None:
    """No $ in the file, but the escapes \\x24 and \\u0024 make one: the shortcut past interpolation must see them."""
    path = write(
        tmp_path,
        """
        version: 1
        queues:
          q:
            max_length: "\\x24{MAX_LENGTH}"
            bindings: [{exchange: amq.topic, routing_key: "\\u0024{KEY}"}]
        """,
    )
    assert "$" not in path.read_text()
    topology = load([path], environ={"MAX_LENGTH": "7", "KEY": "jobs"})
    assert topology.queues[0].arguments == {"x-max-length": 7}
    assert topology.bindings[0].routing_key == "jobs"


def test_a_non_finite_number_is_refused_wherever_it_stands(tmp_path: Path) -> None:
    """NaN and infinity pass every JSON Schema bound; the schema step looks for them in the whole document."""
    for text in (".nan", "-.inf", "1.0e+999"):
        path = write(tmp_path, f"version: 1\nqueues:\n  q: {{arguments: {{x-custom: {text}}}}}\n")
        assert any("must be a finite number" in problem for problem in problems_of(path)), text


def test_several_vhosts_in_one_file_and_split_across_files(tmp_path: Path) -> None:
    both = write(
        tmp_path,
        """
        version: 1
        vhosts:
          /:
            queues: {celery: {}}
          billing:
            queues: {invoices: {dead_letter: true}}
        """,
    )
    topology = load([both], environ={})
    assert [v.name for v in topology.vhosts] == ["/", "billing"]
    assert {(q.vhost, q.name) for q in topology.queues} == {
        ("/", "celery"),
        ("billing", "invoices"),
        ("billing", "invoices.dead"),
    }
    one = write(tmp_path, "version: 1\nqueues: {celery: {}}\ntasks: {app.add: {queue: celery}}\n", "one.yaml")
    two = write(tmp_path, "version: 1\nvhost: billing\nqueues: {celery: {}}\n", "two.yaml")
    assert len(load([one, two], environ={}).queues) == 2


def test_same_object_in_two_files_is_refused(tmp_path: Path) -> None:
    one = write(tmp_path, "version: 1\nqueues: {q: {}}\n", "one.yaml")
    two = write(tmp_path, "version: 1\nqueues:\n  q: {max_length: 1}\n", "two.yaml")
    with pytest.raises(TopologyInvalid) as caught:
        load([one, two], environ={})
    assert [str(p) for p in caught.value.problems] == [
        f"{two}:3:3: queue 'q' in vhost '/' is defined twice; first at {one}:2 (at queues.q)"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "1:1: empty file"),
        (b"# only a comment\n", "1:1: empty document"),
        (b"version: 1\nqueues: [\n", "YAML:"),
        (b"\x00\x01binary", "not a text file"),
        (b"\xff\xfe", "not UTF-8"),
        (b"version: 1\n---\nversion: 1\n", "several YAML documents"),
        (b"- just\n- a list\n", "a topology is a mapping"),
        (b"version: 1\n" + b"#" * (6 * 1024 * 1024), "at most 5 MiB"),
        (b"version: 1\nqueues:\n\tq: {}\n", "3:1: YAML: a tab character indents this line; YAML indents with spaces"),
        (b"version: 1\nqueues:\n  q: {x: \t@}\n", "3:11: YAML: found character that cannot start any token"),
    ],
)
def test_unreadable_files_get_one_clear_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output


def test_cli_reports_every_problem_and_exit_codes(tmp_path: Path) -> None:
    good = REPO / "topologies" / "seed.yaml"
    bad = write(tmp_path, "version: 1\nqueues:\n  q: {type: quorum, durable: false, max_priority: 3}\n")
    ok = CliRunner().invoke(main, ["validate", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "valid:" in ok.output
    result = CliRunner().invoke(main, ["validate", str(good), str(bad), str(tmp_path)])
    assert result.exit_code == 1
    lines = [  # the quorum queue's delivery-limit warning aside
        line for line in result.output.splitlines() if line.startswith(str(tmp_path)) and ": warning: " not in line
    ]
    assert lines == [
        f"{tmp_path}:1:1: is a directory; name the topology files in it (for example dir/*.yaml)",
        f"{bad}:3:30: quorum queues are always durable (at queues.q.durable)",
        f"{bad}:3:51: x-max-priority is not supported on quorum queues (at queues.q.max_priority)",
    ]


def test_every_example_topology_validates() -> None:
    examples = sorted((REPO / "topologies").glob("*.yaml"))
    assert len(examples) >= 2
    result = CliRunner().invoke(main, ["validate", *map(str, examples)])
    assert result.exit_code == 0, result.output


def test_broker_retries_expand_into_one_ttl_queue_per_wait(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        queues:
          celery: {}
          billing: {type: quorum}
        tasks:
          billing.charge:
            queue: billing
            retry: {max_retries: 6, delay: 1.5, delay_max: 10, via: broker}
          billing.*:
            queue: billing
            retry: {max_retries: 2, delay: 3, backoff: false, via: broker}
          hook.received:
            queue: celery
            consume: foreign
            retry: {max_retries: 1, delay: 1, via: broker}
        """,
    )
    topology = load([path], environ={})
    assert [(r.queue, r.wait_ms, r.name) for r in topology.retry_queues] == [
        ("billing", 1500, "billing.retry.1500ms"),
        ("billing", 3000, "billing.retry.3s"),
        ("billing", 6000, "billing.retry.6s"),
        ("billing", 10000, "billing.retry.10s"),
        ("celery", 1000, "celery.retry.1s"),  # a foreign task runs, and retries, on the default queue
    ]
    assert topology.queue("/", "billing.retry.6s") == Queue(
        "/",
        "billing.retry.6s",
        "quorum",
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "billing", "x-message-ttl": 6000},
    )
    assert topology.queue("/", "celery.retry.1s").type == "classic"


# Issue 10: hangs and crashes on hostile input, values the broker cannot take, keys YAML retypes.

LAUGHS = "version: 1\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)
MERGE_BOMB = "version: 1\nm0: &m0 {k0: 1, k1: 2}\n" + "".join(
    f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}], own{i}: 1}}\n" for i in range(1, 8)
)
DEEP_BOMB = "version: 1\nb0: &b0 [x, x]\n" + "".join(f"b{i}: &b{i} [*b{i - 1}, *b{i - 1}]\n" for i in range(1, 60))


@pytest.mark.parametrize("text", [LAUGHS, MERGE_BOMB, DEEP_BOMB], ids=["billion-laughs", "merge-keys", "60-levels"])
def test_alias_bombs_are_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"{path}:1:1: YAML aliases expand this file by more than")
    assert "Traceback" not in result.output


def test_modest_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        exchanges:
          work: {type: direct}
        queues:
          a: &defaults {type: quorum, delivery_limit: 5, bindings: [{exchange: work}]}
          b: {<<: *defaults, delivery_limit: 7}
          c: *defaults
        """,
    )
    topology = load([path], environ={})
    assert topology.queue("/", "b") == Queue("/", "b", "quorum", arguments={"x-delivery-limit": 7})
    assert topology.queue("/", "c") == Queue("/", "c", "quorum", arguments={"x-delivery-limit": 5})


def test_an_alias_to_itself_is_one_line(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "version: 1\nqueues: &q {a: *q}\n")) == ["2:9: YAML: an alias refers to itself"]


_MEASURED = """
import resource, subprocess, sys
command = [sys.executable, "-m", "provisioner.cli", "validate", sys.argv[1]]
result = subprocess.run(command, capture_output=True, text=True)
sys.stderr.write(result.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, result.returncode)
"""


def _validate_in_a_process(file: str) -> tuple[str, int, int]:
    """Run `provision validate FILE` as the only child of a fresh process: its stderr, exit code and peak KiB."""
    outer = subprocess.run([sys.executable, "-c", _MEASURED, file], capture_output=True, text=True, check=True)
    peak, code = outer.stdout.split()
    return outer.stderr, int(code), int(peak)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_special_files_are_read_only_up_to_the_limit(device: str) -> None:
    stderr, code, peak_kib = _validate_in_a_process(device)
    assert code == 1
    assert stderr.splitlines() == [
        f"{device}:1:1: more than 5 MiB; a topology file may be at most 5 MiB",
        "1 problem(s) found",
    ]
    assert peak_kib < 200 * 1024  # bounded: the limit plus the interpreter, never the device


def test_a_pipe_is_bounded_whatever_stat_says() -> None:
    read_end, write_end = os.pipe()  # stat says 0 bytes; the writer never stops

    def endless_writer() -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            while True:
                os.write(write_end, b"# comment\n" * 100_000)

    writer = threading.Thread(target=endless_writer, daemon=True)
    writer.start()
    try:
        result = CliRunner().invoke(main, ["validate", f"/dev/fd/{read_end}"])
    finally:
        os.close(read_end)  # the writer's next write fails: it stops
        writer.join()
        os.close(write_end)
    assert result.exit_code == 1
    limit = "more than 5 MiB; a topology file may be at most 5 MiB"
    assert result.output.splitlines()[0] == f"/dev/fd/{read_end}:1:1: {limit}"


def test_a_fifo_without_a_writer_is_one_line_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "nobody-writes.fifo"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["validate", str(fifo)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"{fifo}:1:1: empty file; a topology needs at least 'version: 1'"


def test_a_process_substitution_pipe_is_read(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"version: 1\nqueues:\n  q: {}\n")
    os.close(write_end)
    try:
        result = CliRunner().invoke(main, ["validate", f"/dev/fd/{read_end}"])
    finally:
        os.close(read_end)
    assert result.exit_code == 0, result.output
    assert "1 queue(s)" in result.output


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("yes", "key 'yes' is read as a boolean (true); quote it"),
        ("on", "key 'on' is read as a boolean (true); quote it"),
        ("no", "key 'no' is read as a boolean (false); quote it"),
        ("true", "key 'true' is read as a boolean (true); quote it"),
        ("~", "key '~' is read as null; quote it"),
        ("null", "key 'null' is read as null; quote it"),
        ("007", "key '007' is read as an integer (7); quote it"),
        ("2024-01-01", "key '2024-01-01' is read as a date (2024-01-01); quote it"),
    ],
)
def test_keys_yaml_reads_as_other_types_are_named_with_their_line(tmp_path: Path, key: str, expected: str) -> None:
    path = write(tmp_path, f"version: 1\nqueues:\n  {key}: {{}}\n  fine: {{}}\n")
    assert problems_of(path) == [f"3:3: {expected} (at queues.{key})"]
    quoted = write(tmp_path, f"version: 1\nqueues:\n  '{key}': {{}}\n", name="quoted.yaml")
    assert load([quoted], environ={}).queues[0].name == key


@pytest.mark.parametrize("name", ['"0\\n"', '"\\r"', '" padded"', '"tab\\t"', '"bell\\a"'])
def test_names_the_broker_would_trim_are_refused(tmp_path: Path, name: str) -> None:
    """RabbitMQ trims white space around names ("\\n" becomes the default exchange): refuse them at their line."""
    path = write(tmp_path, f"version: 1\nexchanges:\n  {name}: {{type: direct}}\nqueues:\n  {name}: {{}}\n")
    found = problems_of(path)
    reasons = ("has white space around it or a control character", "holds the character")
    assert len(found) == 2 and all(any(reason in p for reason in reasons) for p in found), found


VALUE_CASES = {
    "dashes": ('x-max-length: "--5"', "x-max-length must be an integer, not the string '--5'"),
    "superscript": ('x-max-length: "²"', "x-max-length must be an integer, not the string '²'"),
    "trailing letters": ('x-expires: "12abc"', "x-expires must be an integer, not the string '12abc'"),
    "float": ("x-max-length: 1.5", "x-max-length must be an integer, not a number with a fraction or exponent (1.5)"),
    "boolean for integer": ("x-max-priority: true", "x-max-priority must be an integer, not a boolean (true)"),
    "integer for boolean": ("x-single-active-consumer: 1", "x-single-active-consumer must be true or false, not 1"),
    "negative ttl": ("x-message-ttl: -1", "x-message-ttl must be between 0 and 4294967295, not -1"),
    "ttl too long": ("x-message-ttl: 4294967296", "x-message-ttl must be between 0 and 4294967295, not 4294967296"),
    "negative length": ("x-max-length: -5", "x-max-length must be between 0 and 9223372036854775807, not -5"),
    "2**63": (
        "x-max-length-bytes: 9223372036854775808",
        "x-max-length-bytes must be between 0 and 9223372036854775807, not 9223372036854775808",
    ),
    "unknown beyond int64": ("x-plugin: -9223372036854775809", "x-plugin: -9223372036854775809 is outside the signed"),
    "binary": ("x-plugin: !!binary aGVsbG8=", "x-plugin: an AMQP argument holds strings, integers, booleans, lists"),
    "date": ("x-plugin: 2024-01-01", "not a date (2024-01-01)"),
    "timestamp": ("x-plugin: 2024-01-01 10:00:00", "not a datetime (2024-01-01 10:00:00)"),
    "float in a list": ("x-plugin: [1, 2.5]", "x-plugin: an AMQP argument holds strings"),
    "null": ("x-plugin: ~", "not an empty value"),
    "enum": ("x-overflow: drop-tail", "x-overflow must be one of drop-head | reject-publish | reject-publish-dlx"),
    "string for string argument": ("x-dead-letter-exchange: 5", "x-dead-letter-exchange must be a string, not 5"),
}


@pytest.mark.parametrize("name", list(VALUE_CASES))
def test_argument_values_the_broker_cannot_take_are_refused_at_their_line(tmp_path: Path, name: str) -> None:
    line, expected = VALUE_CASES[name]
    path = write(tmp_path, f"version: 1\nqueues:\n  q:\n    arguments:\n      {line}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"5:{len(line.split(':')[0]) + 9}: "), problem
    assert expected in problem, problem
    assert problem.endswith(f"(at queues.q.arguments.{line.split(':')[0]})")


def test_nan_and_infinity_are_refused_everywhere(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        queues:
          q: {arguments: {x-plugin: .nan}, policy: {max-length: .inf}}
        tasks:
          t: {queue: q, retry: {delay: .nan}}
        """,
    )
    assert problems_of(path) == [
        "3:29: must be a finite number, not NaN or infinity (at queues.q.arguments.x-plugin)",
        "3:57: must be a finite number, not NaN or infinity (at queues.q.policy.max-length)",
        "5:32: must be a finite number, not NaN or infinity (at tasks.t.retry.delay)",
    ]


def test_policy_and_exchange_and_binding_values_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        exchanges:
          e: {type: headers, arguments: {alternate-exchange: 1.5}}
        queues:
          q:
            policy: {max-length: "12abc", overflow: sideways}
            bindings: [{exchange: e, arguments: {x-match: all, n: 99999999999999999999}}]
        policies:
          p: {pattern: ^other$, definition: {message-ttl: -1}}
        """,
    )
    assert problems_of(path) == [
        "3:54: alternate-exchange: an AMQP argument holds strings, integers, booleans, lists and tables, "
        "not a number with a fraction or exponent (1.5) (at exchanges.e.arguments.alternate-exchange)",
        "6:26: max-length must be an integer, not the string '12abc' (at queues.q.policy.max-length)",
        "6:45: overflow must be one of drop-head | reject-publish | reject-publish-dlx, not 'sideways' "
        "(at queues.q.policy.overflow)",
        "7:59: n: 99999999999999999999 is outside the signed 64-bit range AMQP carries "
        "(at queues.q.bindings[0].arguments.n)",
        "9:51: message-ttl must be between 0 and 4294967295, not -1 (at policies.p.definition.message-ttl)",
    ]


def test_friendly_integers_beyond_int64_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nqueues:\n  q: {max_length: 9223372036854775808}\n")
    assert problems_of(path) == [
        "3:19: 9223372036854775808 is greater than the maximum of 9223372036854775807 (at queues.q.max_length)"
    ]


def test_numeric_strings_of_integer_arguments_are_accepted_as_integers(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'version: 1\nqueues:\n  q: {arguments: {x-max-length: "42", x-single-active-consumer: "true"}}\n'
    )
    assert load([path], environ={}).queues[0].arguments == {"x-max-length": 42, "x-single-active-consumer": True}


STRING_PLACES = {
    "vhost": ("vhost: ${V}\n", lambda t: t.vhosts[0].name),
    "queue routing key": (
        "queues:\n  q: {bindings: [{exchange: amq.direct, routing_key: '${V}'}]}\n",
        lambda t: t.bindings[0].routing_key,
    ),
    "policy pattern": (
        "policies:\n  p: {pattern: '${V}', definition: {max-length: 1}}\n",
        lambda t: t.policies[0].pattern,
    ),
    "dead-letter exchange name": (
        "queues:\n  q: {dead_letter: {exchange: '${V}'}}\n",
        lambda t: t.dead_letters[0].exchange,
    ),
    "x-dead-letter-exchange argument": (
        "external_exchanges: ['${V}']\nqueues:\n  q: {arguments: {x-dead-letter-exchange: '${V}'}}\n",
        lambda t: t.queues[0].arguments["x-dead-letter-exchange"],
    ),
}


@pytest.mark.parametrize("place", list(STRING_PLACES))
@pytest.mark.parametrize("value", ["2024", "no", "007", "1.5", "true"])
def test_a_lone_variable_stays_a_string_where_the_schema_wants_one(tmp_path: Path, place: str, value: str) -> None:
    body, read = STRING_PLACES[place]
    path = write(tmp_path, "version: 1\n" + body)
    assert read(load([path], environ={"V": value})) == value


@pytest.mark.parametrize(
    ("body", "value", "expected"),
    [
        ("queues:\n  q: {max_length: '${V}'}\n", "5000", {"x-max-length": 5000}),
        ("queues:\n  q: {single_active_consumer: '${V}'}\n", "yes", {"x-single-active-consumer": True}),
        ("queues:\n  q: {arguments: {x-plugin: '${V}'}}\n", "007", {"x-plugin": 7}),
    ],
)
def test_a_lone_variable_takes_its_type_where_numbers_or_booleans_belong(
    tmp_path: Path, body: str, value: str, expected: dict[str, object]
) -> None:
    path = write(tmp_path, "version: 1\n" + body)
    assert load([path], environ={"V": value}).queues[0].arguments == expected


def test_a_lone_variable_in_a_queue_policy_takes_the_argument_tables_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nexternal_exchanges: ['${N}']\n"
        "queues:\n  q: {policy: {max-length: '${N}', dead-letter-exchange: '${N}'}}\n",
    )
    assert load([path], environ={"N": "10"}).policies[0].definition == {"max-length": 10, "dead-letter-exchange": "10"}


def test_non_durable_queues_are_a_warning_and_strict_makes_it_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nqueues:\n  q: {durable: false}\n  d: {}\n")
    expected = (
        f"{path}:3:16: warning: a non-durable queue: RabbitMQ 4.x refuses it when deprecated features are denied "
        "(transient_nonexcl_queues); make it durable (at queues.q.durable)"
    )
    relaxed = CliRunner().invoke(main, ["validate", str(path)])
    assert relaxed.exit_code == 0, relaxed.output
    assert expected in relaxed.output.splitlines()
    assert "valid:" in relaxed.output
    strict = CliRunner().invoke(main, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1
    assert strict.output.splitlines() == [expected, "1 problem(s) found"]
    warnings: list[object] = []
    load([path], environ={}, warnings=warnings)
    assert [str(w) for w in warnings] == [expected]


def test_only_the_queues_on_a_dead_letter_cycle_are_named_not_those_that_lead_into_it(tmp_path: Path) -> None:
    text = """
        version: 1
        exchanges:
          dlx: {type: direct}
        queues:
          feeder:
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: a}
          a:
            bindings: [{exchange: dlx, routing_key: a}]
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: b}
          b:
            bindings: [{exchange: dlx, routing_key: b}]
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: c}
          c:
            bindings: [{exchange: dlx, routing_key: c}]
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: a}
          self:
            bindings: [{exchange: dlx, routing_key: self}]
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: self}
          drained:
            arguments: {x-dead-letter-exchange: dlx, x-dead-letter-routing-key: feeder}
        """
    with pytest.raises(TopologyInvalid) as raised:
        load([write(tmp_path, text)], environ={})
    cycles = sorted(p.message for p in raised.value.problems if "cycle" in p.message)
    assert cycles == ["dead-letter cycle: a -> b -> c -> a", "dead-letter cycle: self -> self"]
