"""Definitions files as RabbitMQ's own import tests write them, found wanting in an adversarial pass (issue 25).

A user with no permission (an administrator or monitoring account) and a user's limits were dropped from
``export --accounts`` without a word; the broker's import creates both.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from provision_cli import run


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
