"""What validate accepts and the broker then refuses, found in an adversarial pass (issue 23): apply refuses
before writing anything, in words, instead of stopping half-way."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from provision_cli import run
from rabbit import api


def test_an_exchange_type_no_enabled_plugin_brings_is_refused_before_any_write(tmp_path: Path, vhost_name: str) -> None:
    """x-consistent-hash without its plugin: the broker refused it after apply had created the vhost (503)."""
    types = {row["name"] for row in api("GET", "overview").json()["exchange_types"]}
    assert "x-consistent-hash" not in types and "x-made-up" not in types  # the test brokers run no such plugin
    topology = tmp_path / "t.yaml"
    topology.write_text(
        f"version: 1\nvhost: {vhost_name}\nexchanges:\n  hashed: {{type: x-consistent-hash}}\n"
        "  made: {type: x-made-up}\n  plain: {type: topic}\n"
    )
    assert run("validate", str(topology)).exit_code == 0
    applied = run("apply", str(topology))
    assert applied.exit_code == 1, applied.output
    assert (
        f"exchange 'hashed' in vhost '{vhost_name}': the broker has no exchange type 'x-consistent-hash'"
        in applied.output
    )
    assert "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange" in applied.output
    assert "exchange 'made'" in applied.output and "exchange 'plain'" not in applied.output.split("Problems")[-1]
    assert api("GET", f"vhosts/{quote(vhost_name, safe='')}").status_code == 404  # nothing was written


def test_permissions_of_a_user_nobody_has_are_refused_before_any_write(tmp_path: Path, vhost_name: str) -> None:
    """The broker answered 400 vhost_or_user_not_found after apply had created the vhost."""
    ghost = f"{vhost_name}-ghost"
    topology = tmp_path / "t.yaml"
    topology.write_text(
        f"version: 1\nvhost: {vhost_name}\npermissions:\n  {ghost}: {{configure: '.*', write: '.*', read: '.*'}}\n"
        f"  guest: {{configure: '.*', write: '.*', read: '.*'}}\n"
        f"topic_permissions:\n  {ghost}: [{{exchange: amq.topic, write: '.*', read: '.*'}}]\n"
    )
    assert run("validate", str(topology)).exit_code == 0
    applied = run("apply", str(topology))
    assert applied.exit_code == 1, applied.output
    problems = applied.output.split("Problems")[-1]
    assert f"permission of user '{ghost}' in vhost '{vhost_name}': no such user" in problems
    assert f"topic permission of user '{ghost}'" in problems and "user 'guest'" not in problems
    assert api("GET", f"vhosts/{quote(vhost_name, safe='')}").status_code == 404  # nothing was written


def test_a_tag_the_broker_would_trim_is_refused_at_its_line(tmp_path: Path) -> None:
    """'administrator ' applied as 'administrator', so no later plan was ever clean."""
    topology = tmp_path / "t.yaml"
    topology.write_text("version: 1\nvhost: v\nusers:\n  u:\n    password_hash: x\n    tags: [ok, 'administrator ']\n")
    validated = run("validate", str(topology))
    assert validated.exit_code == 1
    assert "t.yaml:6:" in validated.output and "tag 'administrator ' holds a comma or a space at an end" in (
        validated.output
    ), validated.output


MIRRORING = {
    "{ha-mode: exactly}": "ha-mode exactly needs ha-params",
    "{ha-mode: all, ha-params: 2}": "ha-mode all takes no ha-params",
    "{ha-mode: nodes, ha-params: [a, 1]}": "ha-mode nodes needs ha-params, a list of node names",
    "{ha-mode: exactly, ha-params: 2, ha-sync-mode: auto}": "ha-sync-mode must be manual or automatic",
    "{ha-params: 2}": "ha-* settings need ha-mode",
    "{ha-mode: everything}": "ha-mode must be all, exactly or nodes",
}


@pytest.mark.parametrize("definition", sorted(MIRRORING))
def test_mirroring_settings_3x_refuses_together_are_refused_at_the_policy(tmp_path: Path, definition: str) -> None:
    """RabbitMQ 3.10 answered 400 (ha-mode="exactly" takes an integer, none given) after the vhost was made."""
    topology = tmp_path / "t.yaml"
    topology.write_text(f"version: 1\nvhost: v\npolicies:\n  p: {{pattern: '^q', definition: {definition}}}\n")
    validated = run("validate", str(topology))
    assert validated.exit_code == 1 and "t.yaml:4:" in validated.output, validated.output
    assert MIRRORING[definition] in validated.output, validated.output


def test_well_formed_mirroring_stays_valid(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(
        "version: 1\nvhost: v\npolicies:\n  p: {pattern: '^q', definition: {ha-mode: exactly, ha-params: 2, "
        "ha-sync-mode: automatic, ha-promote-on-shutdown: always}}\n  n: {pattern: '^n', definition: "
        "{ha-mode: nodes, ha-params: [rabbit@a]}}\n"
    )
    assert run("validate", str(topology)).exit_code == 0


def test_a_federation_policy_needs_the_federation_plugin(tmp_path: Path, vhost_name: str) -> None:
    """With the plugin off the broker answered 400 ('federation-upstream-set' ('all') are not recognised policy
    settings) after the vhost was made; now the plan says so first. With it on, the policy applies."""
    listed = str(api("GET", "extensions").json())
    topology = tmp_path / "t.yaml"
    topology.write_text(
        f"version: 1\nvhost: {vhost_name}\npolicies:\n"
        "  fed: {pattern: '^q', definition: {federation-upstream-set: all}}\n"
    )
    applied = run("apply", str(topology))
    if "federation" in listed:
        assert applied.exit_code == 0, applied.output
        return
    assert applied.exit_code == 1, applied.output
    assert f"policy 'fed' in vhost '{vhost_name}': federation-upstream-set needs the federation plugin" in (
        applied.output
    )
    assert api("GET", f"vhosts/{quote(vhost_name, safe='')}").status_code == 404
