"""Definitions files as RabbitMQ's own import tests write them, found wanting in an adversarial pass (issue 25).

A user with no permission (an administrator or monitoring account) and a user's limits were dropped from
``export --accounts`` without a word; the broker's import creates both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from provision_cli import run

from provisioner.export.accounts import export_users


def definitions(tmp_path: Path, limits: dict[str, object]) -> Path:
    """Two vhosts; 'watcher' holds no permission, 'worker' one in vhost 'jobs' only."""
    users = [
        {"name": "watcher", "password_hash": "x", "tags": ["monitoring"], "limits": limits},
        {"name": "worker", "password_hash": "y", "tags": [], "limits": {}},
    ]
    body = {
        "vhosts": [{"name": "/"}, {"name": "jobs"}],
        "users": users,
        "permissions": [{"user": "worker", "vhost": "jobs", "configure": ".*", "write": ".*", "read": ".*"}],
        "queues": [],
        "exchanges": [],
        "bindings": [],
    }
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(body))
    return path


def test_users_without_permissions_and_user_limits_are_exported(tmp_path: Path) -> None:
    out = tmp_path / "t.yaml"
    result = run("export", "--accounts", "--definitions", str(definitions(tmp_path, {"max-connections": 5})))
    assert result.exit_code == 0, result.output
    out.write_text(result.stdout)
    users = yaml.safe_load(result.stdout)["users"]
    assert users["watcher"]["limits"] == {"max-connections": 5} and users["watcher"]["tags"] == ["monitoring"]
    assert "worker" in users
    passwords = {"USER_WATCHER_PASSWORD": "a-long-password", "USER_WORKER_PASSWORD": "another-password"}
    validated = run("validate", str(out), env=passwords)
    assert validated.exit_code == 0, validated.output


def test_a_user_limit_the_broker_refuses_is_a_problem_and_a_user_of_another_vhost_is_named(tmp_path: Path) -> None:
    result = run("export", "--accounts", "--definitions", str(definitions(tmp_path, {"max-connections": "many"})))
    assert result.exit_code == 0 and "max-connections must be integer, not a string" in result.stderr, result.output
    only = run("export", "--accounts", "--vhost", "/", "--definitions", str(definitions(tmp_path, {})))
    assert "left out: user 'worker': it holds permissions only in vhost(s) 'jobs', which are not exported" in (
        only.stderr
    )
    assert "left out: user 'watcher': it holds no permission in any vhost" in only.stderr, only.stderr


def shovel(vhost: str, name: str, password: str) -> dict[str, object]:
    value = {"src-uri": f"amqp://s:{password}@h/", "src-queue": "q", "dest-uri": "amqp://", "dest-queue": "q"}
    return {"vhost": vhost, "component": "shovel", "name": name, "value": value}


def test_secrets_of_names_alike_or_of_two_vhosts_never_share_one_variable(tmp_path: Path) -> None:
    """'app-a' and 'app.a', 'ü' and 'ö', shovel 'drain' in two vhosts were one ${VAR}: applying the export gave
    every one of them the same password."""
    users = [{"name": name, "password_hash": "x", "tags": [], "limits": {}} for name in ("app-a", "app.a", "ü", "ö")]
    body = {
        "vhosts": [{"name": "one"}, {"name": "two"}],
        "users": users,
        "permissions": [{"user": u["name"], "vhost": "one", "configure": "", "write": "", "read": ""} for u in users],
        "parameters": [
            shovel(vhost, name, password)
            for vhost, name, password in (
                ("one", "drain", "p1"),
                ("two", "drain", "p2"),
                ("one", "d-1", "p3"),
                ("one", "d_1", "p4"),
            )
        ],
    }
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(body))
    result = run("export", "--accounts", "--definitions", str(path))
    assert result.exit_code == 0, result.output
    variables = re.findall(r"(?<!\$)\$\{(\w+)\}", result.stdout)
    assert len(variables) == 8 and len(set(variables)) == 8, variables
    out = tmp_path / "t.yaml"
    out.write_text(result.stdout)
    validated = run("validate", str(out), env={name: "amqp://u:a-long-password@h/" for name in variables})
    assert validated.exit_code == 0, validated.output


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(st.sampled_from("aA-._ü1"), min_size=1, max_size=4), unique=True, max_size=6))
def test_every_exported_user_has_a_variable_of_its_own(names: list[str]) -> None:
    broker = {"users": [{"name": name, "tags": []} for name in names]}
    taken = frozenset({"USER_A_PASSWORD"})  # one a vhost's shovel already took
    found = export_users(broker, set(), whole=True, taken=taken)
    variables = [spec["password"] for spec in found.sections.get("users", {}).values()]
    assert len(set(variables)) == len(names) and not {f"${{{name}}}" for name in taken} & set(variables)


def test_a_global_parameter_holding_a_uri_with_a_password_is_written_as_a_variable(tmp_path: Path) -> None:
    """A global parameter's value is any JSON: a URI with a password at any depth became the -o file's text."""
    body = {
        "vhosts": [{"name": "/"}],
        "global_parameters": [
            {"name": "cluster_name", "value": "rabbit@h"},
            {"name": "upstream", "value": "amqp://g:s3cret-one@h/"},
            {"name": "nested", "value": {"uris": ["amqp://u:s3cret-two@a/", "amqp://b/"], "note": "plain"}},
        ],
    }
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(body))
    out = tmp_path / "t.yaml"
    result = run("export", "--definitions", str(path), "-o", str(out))
    assert result.exit_code == 0, result.output
    written = out.read_text()
    assert "s3cret" not in written + result.output
    values = yaml.safe_load(written)["parameters"]
    assert values["cluster_name"] == "rabbit@h" and values["nested"]["note"] == "plain"
    assert values["nested"]["uris"][1] == "amqp://b/"  # no password: kept as it is
    variables = re.findall(r"(?<!\$)\$\{(\w+)\}", written)
    assert len(variables) == 2 and len(set(variables)) == 2, variables
    assert values["upstream"] == "${" + variables[0] + "}" or values["upstream"] == "${" + variables[1] + "}"
    validated = run("validate", str(out), env={name: "amqp://u:a-long-password@h/" for name in variables})
    assert validated.exit_code == 0, validated.output
