"""Characters an adversarial pass found validate accepting although no log shows them honestly (issue 23).

Tag characters (U+E0000 block) spell ASCII unseen, private-use characters show as anything a font likes, and
a zero-width joiner or non-joiner between ASCII letters makes ``or\\u200dders`` print like ``orders``. Each is
refused at its line in every place a name goes, and through a ``${VAR}``; joiners in emoji and in the scripts
written with them stay valid.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_forged_output import PLACES

from provisioner.errors import TopologyInvalid
from provisioner.topology import load

HIDDEN = {
    "tag letter": "\U000e0041",
    "language tag": "\U000e0001",
    "private use": "\ue000",
    "zero-width joiner between ASCII": "\u200d",
    "zero-width non-joiner between ASCII": "\u200c",
    "Arabic number sign": "\u0600",
    "musical formatting": "\U0001d173",
    "noncharacter": "\ufdd0",
    "noncharacter FFFE": "\ufffe",
}


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("what", sorted(HIDDEN))
def test_hidden_characters_are_refused_in_every_name_at_its_line(tmp_path: Path, place: str, what: str) -> None:
    character = HIDDEN[what]
    path = tmp_path / "t.yaml"
    path.write_text(PLACES[place].format(f"or\\U{ord(character):08x}ders", "x" * 48), encoding="utf-8")
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={})
    messages = [str(problem) for problem in caught.value.problems]
    assert any(f"U+{ord(character):04X}" in message for message in messages), messages
    assert all(problem.line > 1 for problem in caught.value.problems)


def test_a_variable_cannot_bring_a_tag_character_or_a_lone_joiner_in(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        'version: 1\nvhost: ${VH}\nqueues:\n  q:\n    bindings: [{exchange: amq.topic, routing_key: "${RK}"}]\n'
    )
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={"VH": "adv\U000e0041", "RK": "\u200dorders"})
    assert [problem.line for problem in caught.value.problems] == [2, 5]


@pytest.mark.parametrize(
    "name",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family emoji: joiners between emoji
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian: a non-joiner between two letters
        "\u0915\u094d\u200d\u0937",  # Devanagari: a joiner after a virama
    ],
)
def test_joiners_inside_a_script_or_an_emoji_stay_valid(tmp_path: Path, name: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(f'version: 1\nvhost: v\nqueues:\n  "{name}": {{}}\n', encoding="utf-8")
    load([path], environ={})  # raises TopologyInvalid if refused


DOT_PLACES = {
    "vhost": "version: 1\nvhost: '{}'\n",
    "vhosts key": "version: 1\nvhosts:\n  '{}': {{}}\n",
    "policy": "version: 1\npolicies:\n  '{}': {{pattern: '^q', definition: {{max-length: 5}}}}\n",
    "operator policy": "version: 1\noperator_policies:\n  '{}': {{pattern: '^q', definition: {{max-length: 5}}}}\n",
    "user": "version: 1\nusers:\n  '{}': {{password_hash: x}}\n",
    "permission": "version: 1\npermissions:\n  '{}': {{configure: '', write: '', read: ''}}\n",
    "topic permission": "version: 1\ntopic_permissions:\n  '{}': [{{exchange: amq.topic, write: '', read: ''}}]\n",
    "shovel in a vhost": "version: 1\nvhosts:\n  v:\n    shovels:\n      '{}': {{src_uri: 'amqp://', "
    "dest_uri: 'amqp://', src_queue: a, dest_queue: b}}\n",
    "global parameter": "version: 1\nparameters:\n  '{}': 1\n",
}


@pytest.mark.parametrize("place", sorted(DOT_PLACES))
@pytest.mark.parametrize("name", [".", ".."])
def test_dot_segment_names_the_management_api_cannot_address_are_refused(tmp_path: Path, place: str, name: str) -> None:
    """'..' as a vhost crashed apply (the API answered a page that is not JSON); as a user or policy, a 405."""
    path = tmp_path / "t.yaml"
    path.write_text(DOT_PLACES[place].format(name))
    with pytest.raises(TopologyInvalid) as caught:
        load([path], environ={})
    assert any("the management API resolves it in its URL path" in str(p) for p in caught.value.problems)
    assert all(problem.line > 1 for problem in caught.value.problems)


def test_queues_and_exchanges_named_dot_stay_valid(tmp_path: Path) -> None:
    """They are declared over AMQP, and the management API is asked about them by listing."""
    path = tmp_path / "t.yaml"
    path.write_text("version: 1\nvhost: v\nexchanges:\n  '.': {type: topic}\nqueues:\n  '..': {}\n")
    load([path], environ={})


@pytest.mark.parametrize("name", ["::stop-commands::tok.yaml", "  ::error title=forged::fine.yaml"])
def test_a_file_name_cannot_start_a_workflow_command(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub reads a line starting with '::' as a command: '::stop-commands::' would silence later annotations."""
    from click.testing import CliRunner

    from provisioner.cli import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    path.write_text("version: 1\nvhost: v\nqueues:\n  q: {bad: 1}\n")
    result = CliRunner().invoke(main, ["validate", str(path.relative_to(tmp_path))], catch_exceptions=False)
    lines = (result.stdout + result.stderr).splitlines()
    assert result.exit_code == 1 and any(f"{name.strip()}:4:7: unknown field 'bad'" in line for line in lines), lines
    assert not [line for line in lines if line.lstrip().startswith("::")], lines
    annotated = CliRunner().invoke(main, ["validate", "--format", "github", str(path.relative_to(tmp_path))])
    commands = [line for line in annotated.stdout.splitlines() if line.lstrip().startswith("::")]
    assert commands and all(line.startswith("::error file=") for line in commands), commands
