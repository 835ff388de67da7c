"""`plan -o PLAN` / `apply PLAN` on the real broker: exactly the reviewed changes, or a refusal before any write."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from provision_cli import run
from rabbit import AMQP_PORT, AUTH, HOST, MANAGEMENT_URL, api, parameters
from test_secrets import NASTY, leaked

from provisioner.cli import main
from provisioner.saved_plan import read_saved

TOPOLOGY = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
queues:
  orders:
    type: {queue_type}
    bindings: [{{exchange: orders, routing_key: "order.#"}}]
"""

BROKER = [
    "--amqp-url",
    f"amqp://{AUTH[0]}:{AUTH[1]}@{HOST}:{AMQP_PORT}/",
    "--management-url",
    MANAGEMENT_URL.replace("://", f"://{AUTH[0]}:{AUTH[1]}@", 1),
]


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """``provision COMMAND`` with the broker's URLs given as options."""
    return run(args[0], *BROKER, *args[1:], env=env)


def write(tmp_path: Path, vhost: str, queue_type: str = "classic", extra: str = "") -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(vhost=vhost, queue_type=queue_type) + extra)
    return path


def refused(result: Result, *words: str) -> str:
    """The one line of a refusal (exit 1), holding ``words``."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    line = next(line for line in lines if line.startswith("error: "))
    assert line.startswith("error: refusing to apply the saved plan: "), result.output
    assert "nothing was changed" in line and all(word in line for word in words), line
    assert "Applied" not in result.output
    return line


def queue_count(vhost: str, name: str) -> int | None:
    """The queue's messages (ready and unacked) over AMQP, None when it does not exist."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        return connection.channel().queue_declare(name, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if connection.is_open:
            connection.close()


def exchange_exists(vhost: str, name: str) -> bool:
    return api("GET", f"exchanges/{quote(vhost, safe='')}/{quote(name, safe='')}").status_code == 200


def test_a_plan_saved_then_the_broker_changed_by_hand_is_refused_with_nothing_written(
    vhost_name: str, tmp_path: Path
) -> None:
    api("PUT", f"vhosts/{quote(vhost_name, safe='')}").raise_for_status()
    api(
        "PUT",
        f"permissions/{quote(vhost_name, safe='')}/{AUTH[0]}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    )
    topology = write(tmp_path, vhost_name)
    saved = tmp_path / "plan.json"
    assert cli("plan", "-o", str(saved), str(topology)).exit_code == 0
    # by hand, after the review: a policy that changes the queue the plan creates
    api(
        "PUT",
        f"policies/{quote(vhost_name, safe='')}/by-hand",
        json={"pattern": "^orders$", "definition": {"max-length": 5}},
    )
    refused(cli("apply", str(saved)), f"vhost {vhost_name!r}")
    assert queue_count(vhost_name, "orders") is None and not exchange_exists(vhost_name, "orders")
    api("DELETE", f"policies/{quote(vhost_name, safe='')}/by-hand").raise_for_status()
    # the broker as it was when the plan was saved: the same plan applies
    applied = cli("apply", str(saved))
    assert applied.exit_code == 0 and "Applied: 3 created" in applied.output, applied.output
    assert cli("plan", "--detailed-exitcode", str(topology)).exit_code == 0  # converged


def test_a_saved_plan_applies_once_then_is_refused_as_stale(vhost_name: str, tmp_path: Path) -> None:
    topology = write(tmp_path, vhost_name)
    saved = tmp_path / "plan.json"
    planned = cli("plan", "--format", "markdown", "-o", str(saved), str(topology))  # the CI recipe of docs/ci.md
    assert planned.exit_code == 0 and planned.output.startswith("### provision plan: 4 to create"), planned.output
    first = cli("apply", str(saved))
    assert first.exit_code == 0 and "Applied: 4 created" in first.output, (
        first.output
    )  # vhost, exchange, queue, binding
    assert queue_count(vhost_name, "orders") == 0
    definitions = api("GET", f"definitions/{quote(vhost_name, safe='')}").json()
    refused(cli("apply", str(saved)), f"vhost {vhost_name!r}", "was this plan applied already?")
    assert api("GET", f"definitions/{quote(vhost_name, safe='')}").json() == definitions
    # an empty saved plan is a no-op, every time, while nothing changes
    empty = tmp_path / "empty.json"
    assert cli("plan", "-o", str(empty), str(topology)).exit_code == 0
    for _ in range(2):
        again = cli("apply", str(empty))
        assert again.exit_code == 0 and "No changes" in again.output, again.output


def test_files_version_and_broker_identity_changed_are_refused_before_the_broker_is_touched(
    vhost_name: str, tmp_path: Path
) -> None:
    topology = write(tmp_path, vhost_name)
    saved = tmp_path / "plan.json"
    assert cli("plan", "-o", str(saved), str(topology)).exit_code == 0
    original = json.loads(saved.read_text())
    for field, value, said in [
        ("tool_version", "0.0.0-reviewed", "the tool's version changed"),
        ("broker", {"cluster_name": "another@cluster", "rabbitmq_version": "3.10.8"}, "the broker changed"),
    ]:
        saved.write_text(json.dumps(original | {field: value}))
        refused(cli("apply", str(saved)), said)
    edited = json.loads(json.dumps(original))  # what reviewers read is what is applied
    edited["plan"]["changes"][-1]["name"] = "something-else"
    saved.write_text(json.dumps(edited))
    tampered = cli("apply", str(saved))
    assert tampered.exit_code == 1 and "was edited: its changes do not match the digest" in tampered.output
    edited["plan"]["changes"][-1] = original["plan"]["changes"][-1] | {"reason": "display text only", "messages": 7}
    read_saved(json.dumps(edited), "plan.json")  # counts and reasons are display only: not an edit of the changes
    saved.write_text(json.dumps(original))
    variable = write(tmp_path, vhost_name, extra="    max_length: ${PIPELINE_MAX}\n")  # same bytes, other values
    assert cli("plan", "-o", str(saved), str(variable), env={"PIPELINE_MAX": "10"}).exit_code == 0
    refused(cli("apply", str(saved), env={"PIPELINE_MAX": "20"}), "the changes the topology needs changed")
    topology.write_text(topology.read_text().replace("order.#", "order.*"))
    refused(cli("apply", str(saved)), f"topology file {topology} changed")
    flags = cli("apply", "--migrate", str(saved))
    assert flags.exit_code == 1 and "--migrate cannot change a saved plan" in flags.output
    assert api("GET", f"vhosts/{quote(vhost_name, safe='')}").status_code == 404  # nothing was written
    assert cli("apply", str(tmp_path / "missing.json")).exit_code == 1  # a missing PLAN is a missing file
    mixed = cli("apply", str(saved), str(topology))
    assert mixed.exit_code == 1 and f"{saved} is a saved plan: apply it alone" in mixed.output, mixed.output


def test_a_saved_plan_of_a_migration_is_applied_exactly(vhost_name: str, tmp_path: Path) -> None:
    topology = write(tmp_path, vhost_name)
    assert cli("apply", str(topology)).exit_code == 0
    connection = pika.BlockingConnection(parameters(vhost_name))
    channel = connection.channel()
    for number in range(25):
        channel.basic_publish("orders", "order.created", str(number).encode())
    connection.close()
    write(tmp_path, vhost_name, queue_type="quorum")
    plain = tmp_path / "plain.json"
    unsaved = cli("plan", "-o", str(plain), str(topology))  # without --migrate apply would refuse it: not saved
    assert unsaved.exit_code == 1 and not plain.exists(), unsaved.output
    assert f"error: the plan was not saved to {plain}" in unsaved.output and "--migrate" in unsaved.output
    assert "replace queue 'orders'" in unsaved.output and "Saved the plan" not in unsaved.output
    saved = tmp_path / "migrate.json"
    planned = cli("plan", "--migrate", "-o", str(saved), str(topology))
    assert planned.exit_code == 0 and "-/+ queue orders" in planned.output and "25" in planned.output, planned.output
    applied = cli("apply", str(saved))
    assert applied.exit_code == 0 and "1 replaced" in applied.output and "25 message(s) migrated" in applied.output
    assert queue_count(vhost_name, "orders") == 25
    queue = api("GET", f"queues/{quote(vhost_name, safe='')}/orders").json()
    assert queue["type"] == "quorum"
    assert cli("plan", "--detailed-exitcode", str(topology)).exit_code == 0  # converged: the plan re-diffs empty


USERS = """
users:
  {user}:
    password: ${{PIPELINE_TEST_PASSWORD}}
    tags: [administrator]
  {hashed}:
    password_hash: {password_hash}
"""


def test_a_saved_plan_holds_no_secret_and_refuses_a_changed_one(vhost_name: str, tmp_path: Path) -> None:
    """The plan of two users is saved, never applied: no cluster-wide state changes."""
    user, hashed = f"test-pipeline-{uuid.uuid4().hex[:8]}", f"test-pipeline-{uuid.uuid4().hex[:8]}"
    password_hash = base64.b64encode(b"salt" + bytes(range(32))).decode()
    topology = write(tmp_path, vhost_name, extra=USERS.format(user=user, hashed=hashed, password_hash=password_hash))
    saved = tmp_path / "plan.json"
    env = {"PIPELINE_TEST_PASSWORD": NASTY}
    planned = cli("plan", "-o", str(saved), str(topology), env=env)
    assert planned.exit_code == 0 and f"+ user {user}" in planned.output, planned.output
    text = saved.read_text()
    raw = NASTY.encode("utf-8")
    for secret in (NASTY, password_hash):
        assert leaked(secret, text) == []
    for form in (base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper(), base64.b64decode(password_hash).hex()):
        assert form not in text
    credentials = {c["what"]: c for c in json.loads(text)["credentials"]}
    assert credentials[f"user {user!r} password"]["source"] == f"${{PIPELINE_TEST_PASSWORD}} in {topology}"
    assert credentials[f"user {hashed!r} password_hash"]["fingerprint"].startswith("scrypt$")
    changed = cli("apply", str(saved), env={"PIPELINE_TEST_PASSWORD": NASTY + "x"})
    line = refused(changed, f"user {user!r} password (from ${{PIPELINE_TEST_PASSWORD}}")
    assert leaked(NASTY, changed.output) == [] and leaked(NASTY + "x", changed.output) == []
    assert api("GET", f"users/{user}").status_code == 404 and line
    assert api("GET", f"vhosts/{quote(vhost_name, safe='')}").status_code == 404


@pytest.mark.parametrize("bad", ['{"provisioner_plan": 99}', '{"provisioner_plan": 1, "files": 3}'])
def test_a_file_that_is_not_a_readable_plan_is_one_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(bad)
    result = CliRunner().invoke(main, ["apply", "--retry-seconds", "0", str(path)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "saved plan" in lines[0], result.output


def test_no_fingerprint_is_taken_over_a_secret() -> None:
    """A fast hash over a password (or a live hash) could be searched offline: secrets enter only scrypt."""
    from provisioner.parameters.core import Parameter, Uri
    from provisioner.plan import Action, Change, Plan
    from provisioner.saved_plan import fingerprint_text, redacted
    from provisioner.topology.accounts import Credential, User

    live = User("app", (), {}, Credential(None, "bGl2ZS1oYXNoLXNlY3JldA==", "rabbit_password_hashing_sha256"))
    wanted = User("app", ("management",), {}, Credential("desired-secret"))
    before = Parameter("shovel", "v", "drain", {"src-uri": Uri("amqp://u:old-uri-secret@h/v")})
    after = Parameter("shovel", "v", "drain", {"src-uri": Uri("amqp://u:new-uri-secret@h/v")})
    plan = Plan(changes=(Change(Action.UPDATE, live, wanted, "tags"), Change(Action.UPDATE, before, after, "uri")))
    hidden: frozenset[str] = frozenset()  # no secret known: the objects themselves must hide theirs
    text = "".join(fingerprint_text(change.to_json()) for change in plan.changes)
    text += "".join(fingerprint_text(redacted(change.to_json(), hidden)) for change in plan.changes)
    for secret in ("bGl2ZS1oYXNoLXNlY3JldA==", "desired-secret", "old-uri-secret", "new-uri-secret"):
        assert secret not in text


def test_a_change_made_while_apply_waits_for_the_lock_is_refused_under_the_lock(
    vhost_name: str, tmp_path: Path
) -> None:
    """The last check runs under the vhost lock: what moved while apply waited for it stops the apply."""
    import threading

    from rabbit import endpoints, rabbitmqctl, wait_for

    from provisioner.broker.lock import VhostLock
    from provisioner.broker.management import Management
    from provisioner.saved_apply import apply_saved
    from provisioner.saved_plan import StalePlan, read_saved

    vhost = quote(vhost_name, safe="")
    api("PUT", f"vhosts/{vhost}").raise_for_status()
    api("PUT", f"permissions/{vhost}/{AUTH[0]}", json={"configure": ".*", "write": ".*", "read": ".*"})
    saved = tmp_path / "plan.json"
    assert cli("plan", "-o", str(saved), str(write(tmp_path, vhost_name))).exit_code == 0
    outcome: dict[str, BaseException] = {}

    def applying() -> None:
        try:
            broker = endpoints()
            apply_saved(read_saved(saved.read_text(), str(saved)), Management(broker), broker, 1, 120.0)
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    with VhostLock(parameters(vhost_name), 5.0, holder="the test, holding the lock"):
        thread = threading.Thread(target=applying)
        thread.start()

        def waiting() -> bool:  # the apply's lock connection, named after its holder, is open: it waits
            # the node's own listing: a broker denying management metrics (4.3-deny) lists no connections over HTTP
            listing = rabbitmqctl("list_connections", "-q", "vhost", "client_properties")
            return any(
                line.startswith(f"{vhost_name}\t") and "provision apply" in line for line in listing.splitlines()
            )

        wait_for(waiting, timeout=120)
        # by hand, meanwhile: the exchange the plan creates, just as the plan would (safe, but not the reviewed plan)
        api("PUT", f"exchanges/{vhost}/orders", json={"type": "topic", "durable": True}).raise_for_status()
    thread.join()
    assert isinstance(outcome.get("error"), StalePlan), outcome
    assert "while apply waited for the vhost locks" in str(outcome["error"])
    assert "nothing was changed" in str(outcome["error"])
    assert queue_count(vhost_name, "orders") is None  # nothing of the plan was written
    assert not [b for b in api("GET", f"bindings/{vhost}").json() if b["source"] == "orders"]


PASSWORDS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=8, max_size=24)


@settings(max_examples=25, deadline=None)
@given(password=PASSWORDS, old=PASSWORDS)
def test_no_form_of_any_password_reaches_a_saved_plan(password: str, old: str) -> None:
    """Whatever the password (the desired one, or an old one inside a live URI): no encoding of it in the file."""
    from hypothesis import assume

    for secret in (password, old):  # a password of hex digits could be found by chance in a digest
        assume(not set(secret) <= set("0123456789abcdefABCDEF") and "*" not in secret)  # *: the mask itself
    from provisioner.parameters.core import Parameter, Uri
    from provisioner.plan import Action, Change, Plan
    from provisioner.saved_plan import Credential as Fingerprint
    from provisioner.saved_plan import SavedPlan, changes_digest, credential_fingerprint, redacted
    from provisioner.topology.accounts import Credential, User

    written, old_written = quote(password, safe=""), quote(old, safe="")
    user = User("app", ("management",), {}, Credential(password))
    before = Parameter("shovel", "v", "drain", {"src-uri": Uri(f"amqp://u:{old_written}@h/v")})
    after = Parameter("shovel", "v", "drain", {"src-uri": Uri(f"amqp://u:{written}@h/v")})
    plan = Plan(changes=(Change(Action.CREATE, None, user), Change(Action.UPDATE, before, after, "uri")))
    salt, secrets = "00" * 16, {"user 'app' password": password, "shovel 'drain' URI password": written}
    text = SavedPlan(
        "1",
        (("t.yaml", "0" * 64),),
        {},
        {},
        {},
        salt,
        tuple(
            Fingerprint(what, "${X}", credential_fingerprint(secret, salt, what)) for what, secret in secrets.items()
        ),
        changes_digest(plan, secrets.values()),
        redacted(plan.to_json(), frozenset(secrets.values())),
    ).to_text()
    for secret in (password, old):
        raw = secret.encode("utf-8")
        assert leaked(secret, text) == [], secret
        for form in (base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper()):
            assert form not in text
