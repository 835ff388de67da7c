"""Users, permissions, topic permissions, vhost settings and limits against the real broker.

Each test makes its own uniquely named users and vhost and deletes them; the
passwords are checked absent from every output.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from click.testing import Result
from provision_cli import run as run_provision
from provision_cli import write as write_file
from rabbit import AMQP_PORT, HOST, api, version

from provisioner.topology.accounts import password_matches

TOPOLOGY = r"""
version: 1
users:
  ${TEST_USER}:
    password: ${APP_PASSWORD}
    tags: [management]
    limits: {max-connections: 50, max-channels: 200}
vhost: ${TEST_VHOST}
description: the shop
default_queue_type: quorum
limits: {max-queues: 2000, max-connections: 500}
permissions:
  ${TEST_USER}: {configure: "^app\\.", write: ".*", read: ".*"}
  guest: {configure: ".*", write: ".*", read: ".*"}
topic_permissions:
  ${TEST_USER}: [{exchange: events, write: "^app\\.", read: ".*"}]
exchanges:
  events: {type: topic}  # RabbitMQ 4.3 refuses a topic permission on an exchange that does not exist
queues:
  work: {type: classic}
"""


@pytest.fixture
def names(vhost_name: str) -> Iterator[dict[str, str]]:
    """A fresh vhost name, a fresh user name and a password; the user is deleted afterwards."""
    user = f"test-user-{uuid.uuid4().hex[:10]}"
    yield {"TEST_VHOST": vhost_name, "TEST_USER": user, "APP_PASSWORD": f"pw-{uuid.uuid4().hex}"}
    api("DELETE", f"users/{quote(user, safe='')}")


def run(env: dict[str, str], *args: str) -> Result:
    result = run_provision(*args, env=env)
    for secret in (env["APP_PASSWORD"], *(v for k, v in env.items() if k.startswith("OLD_"))):
        assert secret not in result.output, f"a password was printed by {args}"
    return result


def write(tmp_path: Path, text: str = TOPOLOGY, user: str = "") -> str:
    """The topology with the user's name written in (keys are never interpolated)."""
    return write_file(tmp_path, text.replace("${TEST_USER}", user))


def get(path: str) -> object:
    response = api("GET", path)
    response.raise_for_status()
    return response.json()


def logs_in(user: str, password: str, vhost: str) -> bool:
    credentials = pika.PlainCredentials(user, password)
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, AMQP_PORT, vhost, credentials))
    except pika.exceptions.ProbableAuthenticationError:
        return False
    connection.close()
    return True


def test_apply_creates_exactly_the_accounts_and_the_next_plan_is_clean(names: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path, user=names["TEST_USER"])
    vhost, user, password = names["TEST_VHOST"], names["TEST_USER"], names["APP_PASSWORD"]
    planned = run(names, "plan", file)
    assert f"+ user {user}" in planned.output
    order = [c["kind"] for c in json.loads(run(names, "plan", "--json", file).output)["changes"]]
    # apply runs changes in this order: the vhost, its settings and limits, users, permissions, exchanges,
    # topic permissions (4.3 checks their exchange exists), then queues
    kinds = ["vhost", "vhost_limit", "vhost_limit", "user", "permission", "permission", "exchange"]
    kinds += ["topic_permission", "queue"]
    assert order == kinds
    applied = run(names, "apply", file)
    assert applied.exit_code == 0, applied.output

    found = get(f"users/{quote(user, safe='')}")
    assert found["tags"] == ["management"] and found["limits"] == {"max-connections": 50, "max-channels": 200}
    assert password_matches(password, found["password_hash"], found["hashing_algorithm"])
    assert sorted(
        (p["user"], p["configure"], p["write"], p["read"]) for p in get(f"vhosts/{quote(vhost, safe='')}/permissions")
    ) == sorted([("guest", ".*", ".*", ".*"), (user, "^app\\.", ".*", ".*")])
    assert [(t["user"], t["exchange"], t["write"], t["read"]) for t in get(f"vhosts/{vhost}/topic-permissions")] == [
        (user, "events", "^app\\.", ".*")
    ]
    settings = get(f"vhosts/{vhost}")
    assert (settings["description"], settings["default_queue_type"]) == ("the shop", "quorum")
    assert get(f"vhost-limits/{vhost}") == [{"vhost": vhost, "value": {"max-queues": 2000, "max-connections": 500}}]
    # the vhost defaults to quorum, but the topology's classic queue stays classic: the type is always declared
    assert get(f"queues/{vhost}/work")["type"] == "classic"

    assert logs_in(user, password, vhost)
    again = run(names, "plan", "--detailed-exitcode", file)
    assert again.exit_code == 0, again.output
    as_json = run(names, "plan", "--json", file)
    assert json.loads(as_json.output)["changes"] == []
    rendered = run(names, "render", file, "-o", "-")  # run() greps this output for the password too
    assert rendered.exit_code == 0 and "work" in rendered.output


def test_hand_made_changes_are_drift_and_apply_repairs_them(names: dict[str, str], tmp_path: Path) -> None:
    file = write(tmp_path, user=names["TEST_USER"])
    vhost, user = names["TEST_VHOST"], names["TEST_USER"]
    assert run(names, "apply", file).exit_code == 0
    widened = {"configure": ".*", "write": ".*", "read": ".*"}
    api("PUT", f"permissions/{vhost}/{user}", json=widened).raise_for_status()
    api("DELETE", f"vhost-limits/{vhost}/max-queues").raise_for_status()
    body = {"password": names["APP_PASSWORD"], "tags": "management,monitoring"}
    api("PUT", f"users/{user}", json=body).raise_for_status()
    api("PUT", f"vhosts/{vhost}", json={"description": "changed by hand"}).raise_for_status()

    drift = run(names, "drift", file)
    assert drift.exit_code == 2, drift.output
    assert f"update permission '{user}' in '{vhost}': configure: '.*' -> '^app\\\\.'" in drift.output
    assert f"create vhost_limit 'max-queues' in '{vhost}'" in drift.output
    assert f"update user '{user}' (cluster-wide): tags: [management, monitoring] -> [management]" in drift.output
    assert f"update vhost '{vhost}' in '{vhost}': description: changed by hand -> the shop" in drift.output
    assert "password" not in drift.output  # the password did not change: hashed with the live salt, it matches

    assert run(names, "apply", file).exit_code == 0
    assert run(names, "drift", file).exit_code == 0
    assert get(f"users/{user}")["tags"] == ["management"]
    assert get(f"vhosts/{vhost}")["description"] == "the shop"
    assert logs_in(user, names["APP_PASSWORD"], vhost)  # a tags update keeps the password


def test_a_rotated_password_is_a_change_never_printed_and_only_the_new_one_works(
    names: dict[str, str], tmp_path: Path
) -> None:
    file = write(tmp_path, user=names["TEST_USER"])
    vhost, user, old = names["TEST_VHOST"], names["TEST_USER"], names["APP_PASSWORD"]
    assert run(names, "apply", file).exit_code == 0
    rotated = {**names, "APP_PASSWORD": f"new-{uuid.uuid4().hex}", "OLD_PASSWORD": old}

    plan = run(rotated, "plan", file)
    assert f"~ user {user}  (password)" in plan.output
    as_json = run(rotated, "plan", "--json", file)
    change = json.loads(as_json.output)["changes"][0]
    assert (change["kind"], change["reason"], change["after"]["credential"]) == ("user", "password", "(hidden)")
    assert run(rotated, "drift", file).exit_code == 2

    applied = run(rotated, "apply", file)
    assert applied.exit_code == 0 and "1 updated" in applied.output
    assert logs_in(user, rotated["APP_PASSWORD"], vhost)
    assert not logs_in(user, old, vhost)
    assert run(rotated, "plan", "--detailed-exitcode", file).exit_code == 0


def test_prune_deletes_what_the_topology_lacks_but_never_the_connecting_users_permission(
    names: dict[str, str], tmp_path: Path
) -> None:
    vhost, user = names["TEST_VHOST"], names["TEST_USER"]
    file = write(tmp_path, TOPOLOGY.replace('  guest: {configure: ".*", write: ".*", read: ".*"}\n', ""), user)
    assert run(names, "apply", file).exit_code == 0
    other = f"test-other-{uuid.uuid4().hex[:10]}"
    try:
        api("PUT", f"users/{other}", json={"password": "x", "tags": ""}).raise_for_status()
        api("PUT", f"permissions/{vhost}/{other}", json={"configure": "", "write": "", "read": ".*"}).raise_for_status()
        # amq.topic: RabbitMQ 4.3 refuses a topic permission on an exchange that does not exist
        hand_made = {"exchange": "amq.topic", "write": ".*", "read": ".*"}
        api("PUT", f"topic-permissions/{vhost}/{user}", json=hand_made).raise_for_status()
        api("PUT", f"vhost-limits/{vhost}/max-queues", json={"value": 2000}).raise_for_status()

        listed = run(names, "plan", file)
        assert f"permission {other} in '{vhost}'" in listed.output
        assert f"topic_permission {user} on amq.topic in '{vhost}'" in listed.output
        assert f"permission guest in '{vhost}'  (never pruned: provision connects as this user)" in listed.output

        pruned = run(names, "apply", "--prune", file)
        assert pruned.exit_code == 0, pruned.output
        assert "2 deleted" in pruned.output
        users = {p["user"] for p in get(f"vhosts/{vhost}/permissions")}
        assert users == {user, "guest"}  # the other user's permission went, the connecting user's stayed
        assert [t["exchange"] for t in get(f"vhosts/{vhost}/topic-permissions")] == ["events"]
        assert get(f"users/{other}")["name"] == other  # users are pruned only with users_exclusive
        assert run(names, "plan", "--prune", "--detailed-exitcode", file).exit_code == 0

        api("PUT", f"vhost-limits/{vhost}/max-connections", json={"value": 500}).raise_for_status()
        without_limit = write(tmp_path, TOPOLOGY.replace(", max-connections: 500}", "}"), user)
        assert "- vhost_limit max-connections" in run(names, "plan", "--prune", without_limit).output
        assert run(names, "apply", "--prune", without_limit).exit_code == 0
        assert get(f"vhost-limits/{vhost}") == [{"vhost": vhost, "value": {"max-queues": 2000}}]
    finally:
        api("DELETE", f"users/{other}")


def test_a_default_queue_type_the_broker_cannot_change_is_one_line(names: dict[str, str], tmp_path: Path) -> None:
    """RabbitMQ 3.10 sets a vhost's default queue type only at creation: apply says so instead of looping.

    RabbitMQ 4.x changes it in place: there the same apply converges.
    """
    file = write(tmp_path, user=names["TEST_USER"])
    assert run(names, "apply", file).exit_code == 0
    text = TOPOLOGY.replace("default_queue_type: quorum", "default_queue_type: classic")
    classic = write(tmp_path, text, names["TEST_USER"])
    plan = run(names, "plan", classic)
    assert "default_queue_type: quorum -> classic" in plan.output
    applied = run(names, "apply", classic)
    if version() >= (4, 0):
        assert applied.exit_code == 0, applied.output
        settings = get(f"vhosts/{names['TEST_VHOST']}")
        assert isinstance(settings, dict) and settings["default_queue_type"] == "classic"
        assert run(names, "plan", "--detailed-exitcode", classic).exit_code == 0
        return
    assert applied.exit_code == 1
    assert "only when it creates the vhost" in applied.output and "Traceback" not in applied.output


def test_narrowing_the_connecting_users_permission_is_refused(names: dict[str, str], tmp_path: Path) -> None:
    narrowed = TOPOLOGY.replace('guest: {configure: ".*", write: ".*"', 'guest: {configure: "^app", write: ".*"')
    file = write(tmp_path, narrowed, names["TEST_USER"])
    refused = run(names, "apply", file)
    assert refused.exit_code == 1
    assert refused.output.startswith("error: refusing: provision applies vhost")
    assert len(refused.output.splitlines()) == 1
    assert api("GET", f"vhosts/{names['TEST_VHOST']}").status_code == 404  # nothing was changed


def test_a_topology_without_accounts_reads_and_touches_none(names: dict[str, str], tmp_path: Path) -> None:
    """A vhost that names no permissions key leaves its permissions alone, even with --prune."""
    vhost = names["TEST_VHOST"]
    file = write(tmp_path, "version: 1\nvhost: ${TEST_VHOST}\nqueues: {work: {}}\n")
    assert run(names, "apply", file).exit_code == 0
    api("PUT", f"users/{names['TEST_USER']}", json={"password": "x", "tags": ""}).raise_for_status()
    api("PUT", f"permissions/{vhost}/{names['TEST_USER']}", json={"configure": "", "write": "", "read": ""})
    assert run(names, "apply", "--prune", file).output.startswith("No changes")
    assert len(get(f"vhosts/{vhost}/permissions")) == 2


def test_a_password_never_reaches_a_validation_error(names: dict[str, str], tmp_path: Path) -> None:
    """Problems at a user's lines name the place, never the password (run() greps every output)."""
    file = write(tmp_path, TOPOLOGY.replace("tags: [management]", "tags: management"), names["TEST_USER"])
    result = run(names, "validate", file)
    assert result.exit_code == 1 and "tags must be array, not a string" in result.output
    both = write(
        tmp_path,
        TOPOLOGY.replace("password: ${APP_PASSWORD}", "password: ${APP_PASSWORD}\n    password_hash: abc"),
        "u",
    )
    result = run(names, "validate", both)
    assert result.exit_code == 1 and "either password" in result.output


def salted(hasher: object, password: str, salt: bytes = b"\x01\x02\x03\x04") -> str:
    return base64.b64encode(salt + hasher(salt + password.encode()).digest()).decode()  # type: ignore[operator]


@pytest.mark.broker
def test_password_matches_the_brokers_hashes() -> None:
    guest = get("users/guest")
    assert guest["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert password_matches("guest", guest["password_hash"], guest["hashing_algorithm"]) == logs_in(
        "guest", "guest", "/"
    )
    for name, hasher in (("sha256", hashlib.sha256), ("sha512", hashlib.sha512), ("md5", hashlib.md5)):
        algorithm = f"rabbit_password_hashing_{name}"
        assert password_matches("pässword", salted(hasher, "pässword"), algorithm)
        assert not password_matches("password", salted(hasher, "pässword"), algorithm)
    assert not password_matches("x", "", "rabbit_password_hashing_sha256")  # a user without a password
    assert not password_matches("x", "not base64!", "rabbit_password_hashing_sha256")


def test_a_vhost_connection_limit_below_the_workers_still_applies(names: dict[str, str], tmp_path: Path) -> None:
    """max-connections: 2 leaves room for the lock and one lane; the lanes the broker refuses leave their work."""
    queues = "".join(f"  q{index}: {{type: classic}}\n" for index in range(1000))  # five batches: five lanes tried
    path = tmp_path / "limited.yaml"
    path.write_text(f"version: 1\nvhost: {names['TEST_VHOST']}\nlimits: {{max-connections: 2}}\nqueues:\n{queues}")
    applied = run(names, "apply", str(path))
    assert applied.exit_code == 0, applied.output
    assert get(f"vhost-limits/{names['TEST_VHOST']}") == [
        {"vhost": names["TEST_VHOST"], "value": {"max-connections": 2}}
    ]
    listed = get(f"queues/{quote(names['TEST_VHOST'], safe='')}?columns=name")
    assert isinstance(listed, list) and sorted(queue["name"] for queue in listed) == sorted(
        f"q{i}" for i in range(1000)
    )
    assert run(names, "plan", "--detailed-exitcode", str(path)).exit_code == 0


def test_a_connection_limit_below_two_with_declarations_is_refused_before_any_write(
    names: dict[str, str], tmp_path: Path
) -> None:
    """max-connections: 1 would stop apply after setting it (the lock takes the one connection): refused up front."""
    path = tmp_path / "one.yaml"
    path.write_text(f"version: 1\nvhost: {names['TEST_VHOST']}\nlimits: {{max-connections: 1}}\nqueues:\n  q: {{}}\n")
    refused = run(names, "apply", str(path))
    assert refused.exit_code != 0 and "max-connections 1 leaves apply no connection" in refused.output
    assert api("GET", f"vhosts/{quote(names['TEST_VHOST'], safe='')}").status_code == 404  # nothing half-done
