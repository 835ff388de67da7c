"""No name can forge a line of output: validate refuses control, line-separator and bidi characters in every
name and value at its line; plan text, printed lines and exports show whatever the broker holds escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner import cli
from provisioner.cli import output
from provisioner.errors import TopologyInvalid
from provisioner.export.emit import scalar
from provisioner.output import plan_lines
from provisioner.plan import Action, Change, Plan, Unmanaged
from provisioner.topology import load
from provisioner.topology.model import Exchange, Queue

FORGED = "No changes. The broker matches the topology."
# Every character a log, a terminal or a Python comment could take for the end of a line or a reordering.
BREAKERS = ["\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\x0b", "\x0c", "\x1c", "\u2028", "\u2029", "\u202e", "\u2066"]
# Invisible format characters: a name holding one looks like another name.
INVISIBLE = ["\u200b", "\ufeff", "\u00ad", "\u2060", "\u061c"]

# Every place of a topology where the broker or Celery takes a name, with {} for the name.
PLACES = {
    "vhost": 'version: 1\nvhost: "{}"\n',
    "exchange": 'version: 1\nexchanges:\n  "{}": {{type: topic}}\n',
    "queue": 'version: 1\nqueues:\n  "{}": {{}}\n',
    "routing key": 'version: 1\nqueues:\n  q:\n    bindings: [{{exchange: amq.topic, routing_key: "{}"}}]\n',
    "binding argument": 'version: 1\nqueues:\n  q:\n    bindings: [{{exchange: amq.match, arguments: {{k: "{}"}}}}]\n',
    "dead-letter routing key": 'version: 1\nqueues:\n  q: {{dead_letter: {{routing_key: "{}"}}}}\n',
    "argument value": 'version: 1\nqueues:\n  q: {{arguments: {{x-custom: "{}"}}}}\n',
    "policy": 'version: 1\npolicies:\n  "{}": {{pattern: "^q$", definition: {{max-length: 1}}}}\n',
    "policy pattern": 'version: 1\npolicies:\n  p: {{pattern: "{}", definition: {{max-length: 1}}}}\n',
    "task": 'version: 1\nqueues:\n  celery: {{}}\ntasks:\n  "{}": {{queue: celery}}\n',
    "user": 'version: 1\nusers:\n  "{}": {{password_hash: "{}", tags: []}}\n',
    "permission user": 'version: 1\npermissions:\n  "{}": {{configure: ".*", write: ".*", read: ".*"}}\n',
    "external exchange": 'version: 1\nexternal_exchanges: ["{}"]\n',
    "vhosts key": 'version: 1\nvhosts:\n  "{}": {{}}\n',
    "celery default queue": 'version: 1\nqueues:\n  q: {{}}\ncelery: {{default_queue: "{}"}}\n',
}


def escaped(character: str) -> str:
    """The character as a YAML double-quoted escape."""
    return f"\\u{ord(character):04x}"


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("character", BREAKERS + INVISIBLE)
def test_validate_refuses_a_breaking_character_in_every_name_at_its_line(
    tmp_path: Path, place: str, character: str
) -> None:
    name = f"a{escaped(character)}{FORGED}"
    path = tmp_path / "t.yaml"
    path.write_text(PLACES[place].format(name, "x" * 48))
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={})
    messages = [str(problem) for problem in caught.value.problems]
    assert any(f"U+{ord(character):04X}" in message for message in messages), messages
    assert all(problem.line > 1 for problem in caught.value.problems)  # at its line, never the file's top
    assert all("\n" not in message and "\r" not in message for message in messages)


@pytest.mark.parametrize("character", BREAKERS)
def test_a_variable_cannot_bring_a_breaking_character_in(tmp_path: Path, character: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        'version: 1\nvhost: ${VH}\nqueues:\n  q:\n    bindings: [{exchange: amq.topic, routing_key: "${RK}"}]\n'
    )
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={"VH": f"v{character}{FORGED}", "RK": f"k{character}"})
    assert [problem.line for problem in caught.value.problems] == [2, 5]


def test_a_description_may_hold_line_breaks_and_tabs_but_no_other_control(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text('version: 1\ndescription: "line one\\n\\tline two"\n')
    assert load([path], environ={}).vhosts
    path.write_text('version: 1\ndescription: "bell\\a"\n')
    with pytest.raises(TopologyInvalid, match="U\\+0007"):
        load([path], environ={})


@pytest.mark.parametrize("raw", [b"a\xffb", b"\xc3", b"\xed\xa0\x80"])
def test_a_variable_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("version: 1\nvhost: ${VH}\nusers:\n  u:\n    password: ${PW}\n    tags: []\n")
    value = raw.decode("utf-8", "surrogateescape")
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={"VH": value, "PW": value})
    assert [str(p).split(": ", 1)[1] for p in caught.value.problems] == [
        "environment variable VH is not UTF-8 text (at vhost)",
        "environment variable PW is not UTF-8 text (at users.u.password)",
    ]


@pytest.mark.parametrize("depth", [65, 200, 500, 700, 989, 990, 5000])
@pytest.mark.parametrize("shape", ["[", "{a: "])
def test_values_nested_at_any_depth_are_one_clean_line(tmp_path: Path, depth: int, shape: str) -> None:
    close = "]" if shape == "[" else "}"
    inner = "" if shape == "[" else "1"
    path = tmp_path / "t.yaml"
    path.write_text(f"version: 1\nqueues:\n  q:\n    arguments:\n      x-deep: {shape * depth}{inner}{close * depth}\n")
    result = CliRunner().invoke(cli.main, ["validate", str(path)])
    assert result.exit_code == 1 and "internal error" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and "nest" in lines[0], lines


# What the broker holds (another team's objects, unmanaged) is shown escaped, one line per line.


def forging_plan(name: str) -> Plan:
    exchange = Exchange("v", name, "topic")
    queue = Queue(f"v{name}", name)
    return Plan(
        changes=(Change(Action.CREATE, None, exchange, reason=name),),
        unmanaged=(Unmanaged(queue, note=name),),
    )


@settings(max_examples=200, deadline=None)
@given(name=st.text(st.sampled_from(["a", " ", ":", *BREAKERS]), max_size=6).map(lambda t: t + FORGED))
def test_plan_text_keeps_every_name_on_its_line(name: str) -> None:
    lines = [text for text, _ in plan_lines(forging_plan(name))]
    assert all(line.isprintable() for line in lines), lines
    assert FORGED not in [line.strip() for line in lines]
    assert lines[-1].startswith("Plan: 1 to create")


def test_every_printed_line_stays_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    output._SECRETS.clear()
    output.say(f"drift: queue 'a\nb{FORGED}\r\u2028\x1b[2K' in '/'")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.rstrip("\n").isprintable(), out


@pytest.mark.parametrize("character", [*BREAKERS, "\t", "\\", '"', "'", "#", "$"])
def test_an_exported_name_reads_back_the_same_and_cannot_start_a_line(character: str) -> None:
    name = f"a{character}{FORGED}"
    text = f"{scalar(name)}: {scalar(name)}"
    assert "\n" not in text and text.isprintable()
    assert yaml.safe_load(text) == {name: name}


@pytest.mark.parametrize("depth", [600, 100_000])
def test_a_definitions_file_nested_at_any_depth_is_one_line(tmp_path: Path, depth: int) -> None:
    queue = {"name": "q", "vhost": "v", "durable": True, "auto_delete": False, "arguments": {"x-a": "@"}}
    text = json.dumps({"vhosts": [{"name": "v"}], "queues": [queue]}).replace('"@"', "[" * depth + "]" * depth)
    path = tmp_path / "definitions.json"
    path.write_text(text)
    result = CliRunner().invoke(cli.main, ["export", "--definitions", str(path)])
    assert "internal error" not in result.output and "nest" in result.output, result.output


def test_an_exported_broker_name_cannot_forge_a_line(tmp_path: Path) -> None:
    name = f"q\n{FORGED}\u2028x"
    queue = {"name": name, "vhost": "v", "durable": True, "auto_delete": False, "arguments": {}}
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps({"vhosts": [{"name": "v"}], "queues": [queue]}))
    result = CliRunner().invoke(cli.main, ["export", "--definitions", str(path), "-o", str(tmp_path / "t.yaml")])
    assert all(line.isprintable() and line.strip() != FORGED for line in result.output.splitlines())
    exported = (tmp_path / "t.yaml").read_text()
    assert all(line.isprintable() and line.strip() != FORGED for line in exported.splitlines())
    assert name in yaml.safe_load(exported)["queues"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_any_text_said_is_one_printable_line(text: str) -> None:
    output._SECRETS.clear()
    runner = CliRunner()
    with runner.isolation() as (out, _err, _):
        output.say(text)
        printed = out.getvalue().decode("utf-8")
    assert printed.endswith("\n") and printed.count("\n") == 1 and printed[:-1].isprintable(), repr(printed)


def test_a_file_name_with_line_breaks_stays_in_its_comment_and_its_line(tmp_path: Path) -> None:
    sentinel = tmp_path / "RAN"
    name = "t\nopen('RAN', 'w')\n\u2028#.yaml"  # run in tmp_path: the sentinel is tmp_path / "RAN"
    path = tmp_path / name
    path.write_text("version: 1\nqueues:\n  celery: {}\n")
    validated = CliRunner().invoke(cli.main, ["validate", str(path)])
    assert validated.exit_code == 0 and validated.output.count("\n") == 1, validated.output
    config = tmp_path / "celeryconfig.py"
    rendered = CliRunner().invoke(cli.main, ["render", str(path), "-o", str(config)])
    assert rendered.exit_code == 0 and rendered.output.count("\n") == 1, rendered.output
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(config)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert not sentinel.exists()
    source_line = next(line for line in config.read_text().splitlines() if line.startswith("# Source: "))
    assert source_line.isprintable() and "\\n" in source_line


def test_a_hostile_name_another_client_made_is_escaped_in_plan_drift_and_export(
    vhost_name: str, tmp_path: Path
) -> None:
    """The broker takes names validate refuses: another client's queue shows escaped in every output."""
    import pika
    from rabbit import parameters

    path = tmp_path / "t.yaml"
    path.write_text(f"version: 1\nvhost: {vhost_name}\nqueues:\n  work: {{}}\n")
    assert CliRunner().invoke(cli.main, ["apply", str(path)]).exit_code == 0
    # The broker drops \n and \r from a declared name; it keeps the other breakers.
    evil = f"evil\u2028{FORGED}\x85\x1b[2K\u202e"
    connection = pika.BlockingConnection(parameters(vhost_name))
    try:
        connection.channel().queue_declare(evil, durable=True)
    finally:
        connection.close()
    outputs = [
        CliRunner().invoke(cli.main, args).output
        for args in (["plan", str(path)], ["plan", "--prune", str(path)], ["drift", "--prune", str(path)])
    ]
    outputs.append(CliRunner().invoke(cli.main, ["export", "--vhost", vhost_name]).output)
    for printed in outputs:
        lines = printed.splitlines()
        assert all(line.isprintable() and line.strip() != FORGED for line in lines), printed
        assert any("evil\\u2028" in line for line in lines), printed  # the name is there, escaped
