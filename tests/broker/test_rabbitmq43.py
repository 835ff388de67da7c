"""What RabbitMQ 4.1-4.3 changed, checked on the broker under test (every leg; tests/rabbit.py says per version).

The 4.3 leg (PROVISION_TEST_BROKER=4.3-deny) is where these bite: topic
permissions checked against their exchange, internal exchanges missing from
definitions, plugin scripts listed, global QoS downgraded, protected users, the
ETag, Khepri. The other legs show what the same steps do on 3.10 and 4.0.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
import rabbit
import yaml
from nodes import deprecated_features
from provision_cli import run
from rabbit import api, fresh_vhost, parameters, version, wait_for

from provisioner.parameters.broker import _extension_names


@pytest.fixture
def user() -> Iterator[str]:
    name = f"test-user-{uuid.uuid4().hex[:10]}"
    yield name
    api("DELETE", f"users/{quote(name, safe='')}")


# --- Topic permissions: written after their exchange; one on a missing exchange is a plan problem on 4.3 ---

TOPIC_TOPOLOGY = """
version: 1
users:
  ${TEST_USER}: {password: "${TEST_PASSWORD}", tags: []}
vhost: ${TEST_VHOST}
permissions:
  ${TEST_USER}: {configure: "", write: ".*", read: ".*"}
topic_permissions:
  ${TEST_USER}: [{exchange: events, write: "^app\\\\.", read: ".*"}, {exchange: amq.topic, write: "x", read: "y"}]
exchanges:
  events: {type: topic}
"""


def _topic_file(tmp_path: Path, user: str, text: str = TOPIC_TOPOLOGY) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(textwrap.dedent(text).replace("${TEST_USER}", user))
    return path


def test_topic_permissions_are_written_after_their_exchange(tmp_path: Path, vhost_name: str, user: str) -> None:
    """The issue's `400 no_such_exchange ... (after 4 change(s) applied)`: now the exchange comes first."""
    env = {"TEST_VHOST": vhost_name, "TEST_PASSWORD": uuid.uuid4().hex}
    path = _topic_file(tmp_path, user)
    applied = run("apply", str(path), env=env)
    assert applied.exit_code == 0, applied.output
    found = api("GET", f"topic-permissions/{quote(vhost_name, safe='')}/{quote(user, safe='')}").json()
    assert sorted((t["exchange"], t["write"], t["read"]) for t in found) == [
        ("amq.topic", "x", "y"),
        ("events", "^app\\.", ".*"),
    ]
    assert run("plan", "--detailed-exitcode", str(path), env=env).exit_code == 0


def test_a_topic_permission_on_a_missing_exchange_is_refused_before_anything_is_written(
    tmp_path: Path, vhost_name: str, user: str
) -> None:
    """On 4.3 the broker refuses it, so plan says so and apply writes nothing; older brokers take it."""
    env = {"TEST_VHOST": vhost_name, "TEST_PASSWORD": uuid.uuid4().hex}
    path = _topic_file(tmp_path, user, TOPIC_TOPOLOGY.replace("exchange: events", "exchange: nowhere"))
    planned = run("plan", str(path), env=env)
    applied = run("apply", str(path), env=env)
    with fresh_vhost("topic") as vhost:  # the broker's own answer, on an exchange that does not exist
        raw = api("PUT", f"topic-permissions/{vhost}/guest", json={"exchange": "nowhere", "write": ".*", "read": ""})
    if rabbit.checks_topic_permission_exchanges():
        assert raw.status_code == 400 and "no_such_exchange" in raw.text
        assert planned.exit_code == 1 and applied.exit_code == 1, applied.output
        assert f"exchange 'nowhere' exists neither in the topology nor on the broker, and RabbitMQ {version()[0]}." in (
            planned.output
        )
        assert "nothing was changed" in applied.output
        assert api("GET", f"users/{quote(user, safe='')}").status_code == 404  # not half-done
    else:
        assert raw.status_code in (201, 204)
        assert planned.exit_code == 0 and applied.exit_code == 0, applied.output


def test_replacing_an_exchange_keeps_the_topic_permissions_on_it(tmp_path: Path, vhost_name: str, user: str) -> None:
    """4.3 deletes an exchange's topic permissions with it: apply --migrate puts them back after the replace."""
    env = {"TEST_VHOST": vhost_name, "TEST_PASSWORD": uuid.uuid4().hex}
    assert run("apply", str(_topic_file(tmp_path, user)), env=env).exit_code == 0
    with fresh_vhost("topic") as vhost:  # the broker's own behaviour
        api("PUT", f"exchanges/{vhost}/x", json={"type": "topic"}).raise_for_status()
        api("PUT", f"topic-permissions/{vhost}/guest", json={"exchange": "x", "write": ".*", "read": ""})
        api("DELETE", f"exchanges/{vhost}/x").raise_for_status()
        left = api("GET", f"vhosts/{vhost}/topic-permissions").json()
        assert (left == []) is rabbit.drops_topic_permissions_with_their_exchange(), left
    changed = TOPIC_TOPOLOGY.replace("events: {type: topic}", "events: {type: topic, arguments: {x-note: v2}}")
    path = _topic_file(tmp_path, user, changed)
    replaced = run("apply", "--migrate", str(path), env=env)
    assert replaced.exit_code == 0 and "1 replaced" in replaced.output, replaced.output
    found = api("GET", f"topic-permissions/{quote(vhost_name, safe='')}/{quote(user, safe='')}").json()
    assert ("events", "^app\\.", ".*") in [(t["exchange"], t["write"], t["read"]) for t in found]
    assert run("plan", "--detailed-exitcode", str(path), env=env).exit_code == 0


# --- Plugin detection: GET /api/extensions lists a plugin's scripts on 4.3 ----------------------------------


def test_extension_scripts_are_read_as_3x_and_4_3_write_them() -> None:
    """Recorded answers: 3.10 gives one name per row, 4.3.6 a list for federation and shovel management."""
    answer_3_10 = [{"javascript": "dispatcher.js"}, {"javascript": "federation.js"}, {"javascript": "shovel.js"}]
    answer_4_3 = [
        {"javascript": "dispatcher.js"},
        {"javascript": ["federation_management-ejs.js", "federation.js"]},
        {"javascript": "shovel.js"},
        {"javascript": ["shovel_management-ejs.js", "shovel.js"]},
    ]
    assert {"federation.js", "shovel.js"} <= _extension_names(answer_3_10)
    assert {"federation.js", "shovel.js"} <= _extension_names(answer_4_3)
    assert "federation.js" not in _extension_names([{"javascript": "dispatcher.js"}, {"other": 1}])


@pytest.mark.broker
def test_the_broker_under_tests_extensions_are_read() -> None:
    """Whatever shape the broker under test answers in, the management plugin's own script is found."""
    assert "dispatcher.js" in _extension_names(api("GET", "extensions").json())


# --- Internal exchanges and their exchange-to-exchange bindings: 4.3's definitions leave them out -----------

E2E_TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  orders: {type: topic}
  audit: {type: fanout, internal: true, bindings: [{exchange: orders, routing_key: "#"}]}
  archive: {type: topic, bindings: [{exchange: audit}]}
queues:
  audit: {bindings: [{exchange: audit}]}
"""


def test_live_export_and_plan_keep_internal_exchanges_and_their_bindings(tmp_path: Path, vhost_name: str) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(textwrap.dedent(E2E_TOPOLOGY))
    env = {"TEST_VHOST": vhost_name}
    assert run("apply", str(path), env=env).exit_code == 0
    listed = [x["name"] for x in api("GET", f"definitions/{quote(vhost_name, safe='')}").json()["exchanges"]]
    assert ("audit" not in listed) is rabbit.definitions_leave_out_internal_exchanges()
    assert run("plan", "--detailed-exitcode", str(path), env=env).exit_code == 0  # not "+ exchange audit" forever
    exported = run("export", "--vhost", vhost_name, "-o", str(tmp_path / "out.yaml"), env=env)
    assert exported.exit_code == 0, exported.output
    document = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert document["exchanges"]["audit"] == {
        "type": "fanout",
        "internal": True,
        "bindings": [{"exchange": "orders", "routing_key": "#"}],
    }
    assert document["exchanges"]["archive"]["bindings"] == [{"exchange": "audit"}]
    assert run("plan", "--detailed-exitcode", str(tmp_path / "out.yaml"), env=env).exit_code == 0


# --- Facts of 4.1-4.3 a topology tool relies on --------------------------------------------------------------


def _deliveries_until_gone(vhost: str, queue: str, most: int) -> int:
    """Deliveries of the queue's one message, each ended by closing the consumer's channel (a failed delivery)."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        deliveries = 0
        while deliveries < most:
            channel = connection.channel()
            method, _, _ = channel.basic_get(queue)
            if method is None:
                break
            deliveries += 1
            channel.close()  # unacked: the broker takes it back as a failed delivery
        return deliveries
    finally:
        connection.close()


@pytest.mark.broker
def test_a_delivery_limit_policy_reaches_an_existing_quorum_queue() -> None:
    """Issue: "reaches existing quorum queues only from 4.3". On 3.10.8, 4.0.5 and 4.3.6 it reaches them."""
    with fresh_vhost("limit") as vhost:
        connection = pika.BlockingConnection(parameters(vhost))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("work", durable=True, arguments={"x-queue-type": "quorum"})
        body = {"pattern": "^work$", "definition": {"delivery-limit": 2}, "apply-to": "queues"}
        assert api("PUT", f"policies/{quote(vhost, safe='')}/limit", json=body).status_code in (201, 204)
        wait_for(lambda: rabbit.queue_policy(vhost, "work") == "limit")
        channel.basic_publish("", "work", b"poison", pika.BasicProperties(delivery_mode=2))
        connection.close()
        assert _deliveries_until_gone(vhost, "work", most=25) == 3  # the first delivery and 2 more
        again = pika.BlockingConnection(parameters(vhost))
        try:
            assert again.channel().queue_declare("work", passive=True).method.message_count == 0
        finally:
            again.close()


@pytest.mark.broker
def test_global_qos_on_a_quorum_queue_is_refused_before_4_3_and_downgraded_on_4_3() -> None:
    """Global QoS is per consumer from 4.3: two consumers with a channel-wide prefetch of 1 hold one each.

    Before, a quorum queue refuses it (540; 3.10 closes the connection, 4.0 the channel).
    """
    with fresh_vhost("qos") as vhost:
        connection = pika.BlockingConnection(parameters(vhost))
        try:
            setup = connection.channel()
            setup.confirm_delivery()
            setup.queue_declare("work", durable=True, arguments={"x-queue-type": "quorum"})
            for index in range(4):
                setup.basic_publish("", "work", str(index).encode(), pika.BasicProperties(delivery_mode=2))
            channel = connection.channel()
            channel.basic_qos(prefetch_count=1, global_qos=True)
            held: list[int] = []
            try:
                for _ in range(2):
                    channel.basic_consume("work", lambda ch, method, props, body: held.append(method.delivery_tag))
                wait_for(lambda: connection.process_data_events(time_limit=0.1) or len(held) >= 2)
            except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as refused:
                assert rabbit.refuses_global_qos_on_quorum_queues(), refused
                assert refused.reply_code == 540
                return
            assert not rabbit.refuses_global_qos_on_quorum_queues()
            ready = setup.queue_declare("work", passive=True).method.message_count
            assert (len(held), ready) == (2, 2)  # one per consumer, not one per channel
        finally:
            if connection.is_open:
                connection.close()


@pytest.mark.broker
def test_a_passive_declare_needs_no_configure_permission(user: str) -> None:
    """4.2.6 and 4.3.0 asked for configure (fixed in 4.3.1): counting by passive declare works for a reader."""
    with fresh_vhost("passive") as vhost:
        api("PUT", f"users/{user}", json={"password": "reader-pw", "tags": ""}).raise_for_status()
        api("PUT", f"permissions/{vhost}/{user}", json={"configure": "", "write": "", "read": ".*"}).raise_for_status()
        owner = pika.BlockingConnection(parameters(vhost))
        owner.channel().queue_declare("counted", durable=True)
        owner.close()
        reader = pika.BlockingConnection(
            pika.ConnectionParameters(rabbit.HOST, rabbit.AMQP_PORT, vhost, pika.PlainCredentials(user, "reader-pw"))
        )
        try:
            assert reader.channel().queue_declare("counted", passive=True).method.message_count == 0
        finally:
            reader.close()


def etag(vhost: str) -> str | None:
    return api("GET", f"definitions/{vhost}").headers.get("ETag")


@pytest.mark.broker
def test_definitions_answer_an_etag_from_4_3() -> None:
    with fresh_vhost("etag") as vhost:
        first = api("GET", f"definitions/{vhost}")
        assert ("ETag" in first.headers) is rabbit.answers_definitions_etag()
        if "ETag" in first.headers:
            # The tag follows the whole metadata store, which a node also writes by itself (a vhost just
            # created settles for a moment): it holds still once nothing changes, and moves when we write.
            assert wait_for(lambda: etag(vhost) == etag(vhost))
            still = etag(vhost)
            api("PUT", f"exchanges/{vhost}/tagged", json={"type": "direct"}).raise_for_status()
            assert etag(vhost) != still


@pytest.mark.broker
def test_the_metadata_store_is_khepri_only_on_4_3() -> None:
    flags = {flag["name"]: flag["state"] for flag in api("GET", "feature-flags").json()}
    assert (flags.get("khepri_db") == "enabled") is (rabbit.metadata_store() == "khepri")


@pytest.mark.broker
def test_stricter_http_validation_of_a_vhost_default_queue_type() -> None:
    """4.0.5 crashes on an unknown default queue type (500, which a client retries); 4.3.6 answers 400."""
    name = f"test-dqt-{uuid.uuid4().hex[:10]}"
    try:
        answer = api("PUT", f"vhosts/{name}", json={"default_queue_type": "bogus"})
        expected = 400 if version() >= (4, 3) else (500 if version() >= (4, 0) else answer.status_code)
        assert answer.status_code == expected, answer.text
    finally:
        api("DELETE", f"vhosts/{name}")


# --- Protected users and vhosts ------------------------------------------------------------------------------


@pytest.mark.broker
def test_a_protected_user_is_a_plan_problem_where_the_broker_refuses_to_change_it(
    tmp_path: Path, vhost_name: str, user: str
) -> None:
    """4.3 refuses PUT and DELETE of a user tagged protected: plan says so before apply half-fails."""
    api("PUT", f"users/{user}", json={"password": "old-pw", "tags": "protected"}).raise_for_status()
    raw = api("PUT", f"users/{user}", json={"password": "old-pw", "tags": "protected,management"})
    assert (raw.status_code == 400) is rabbit.protects_users_and_vhosts(), raw.text
    path = tmp_path / "topology.yaml"
    text = f"version: 1\nusers:\n  {user}: {{password: '${{NEW_PW}}', tags: [monitoring]}}\nvhost: {vhost_name}\n"
    path.write_text(text)
    planned = run("plan", str(path), env={"NEW_PW": "new-pw"})
    applied = run("apply", str(path), env={"NEW_PW": "new-pw"})
    tags = api("GET", f"users/{user}").json()["tags"]
    if rabbit.protects_users_and_vhosts():
        assert planned.exit_code == 1 and applied.exit_code == 1, applied.output
        assert f"user {user!r} is tagged protected" in planned.output
        assert "protected" in tags and api("GET", f"vhosts/{vhost_name}").status_code == 404  # nothing written
    else:
        assert applied.exit_code == 0, applied.output
        assert tags == ["monitoring"]


@pytest.mark.broker
def test_apply_keeps_a_vhosts_deletion_protection(tmp_path: Path, vhost_name: str) -> None:
    """A vhost protected from deletion (rabbitmqctl, 4.3) stays protected when apply writes its description."""
    api("PUT", f"vhosts/{vhost_name}", json={"description": "before"}).raise_for_status()
    protects = rabbit.protects_users_and_vhosts()
    if protects:
        rabbit.rabbitmqctl("enable_vhost_deletion_protection", vhost_name)
    try:
        path = tmp_path / "topology.yaml"
        path.write_text(f"version: 1\nvhost: {vhost_name}\ndescription: after\n")
        assert run("apply", str(path)).exit_code == 0
        found = api("GET", f"vhosts/{vhost_name}").json()
        assert found["description"] == "after"
        assert bool(found.get("protected_from_deletion")) is protects
        assert (api("DELETE", f"vhosts/{vhost_name}").status_code == 412) is protects
        api("PUT", f"vhosts/{vhost_name}", json={"description": "after"}).raise_for_status()  # when it was deleted
        assert json.loads(run("plan", "--json", str(path)).output)["changes"] == []
    finally:
        if protects:
            rabbit.rabbitmqctl("disable_vhost_deletion_protection", vhost_name)


@pytest.mark.broker
def test_a_denying_leg_denies_every_deprecated_feature_the_broker_knows() -> None:
    """PROVISION_TEST_BROKER=4.3-deny: the deny configuration names each feature the broker lists, and 4.3
    (which says each feature's state) reports every one denied."""
    if version() < (4, 0):
        assert api("GET", "deprecated-features").status_code == 404  # 3.10 has no deprecated features
        return
    listed = json.loads(rabbit.rabbitmqctl("list_deprecated_features", "--formatter", "json"))
    assert {feature["name"] for feature in listed} <= set(deprecated_features(rabbit.INSTALLATION))
    states = {feature["name"]: feature.get("state") for feature in listed}
    if version() >= (4, 3):
        assert (set(states.values()) == {"denied"}) is rabbit.DENY_DEPRECATED, states


# --- Protected queues (4.1+): a plugin's own, deleted by the broker only with their owner ---


@pytest.mark.broker
def test_a_protected_queue_is_never_pruned_replaced_or_exported(tmp_path: Path, vhost_name: str) -> None:
    """A prune plans no delete of a protected queue (apply would stop half-way: 405 RESOURCE_LOCKED), a
    topology that would replace it is a plan problem with nothing written, and export leaves it out."""
    api("PUT", f"vhosts/{vhost_name}").raise_for_status()
    if not rabbit.protects_plugin_queues():  # 3.10, 4.0: no queue can have an internal owner
        with pytest.raises(subprocess.CalledProcessError):
            rabbit.declare_protected_queue(vhost_name, "plugin.owned")
        return
    rabbit.declare_protected_queue(vhost_name, "plugin.owned")
    api("POST", f"bindings/{vhost_name}/e/amq.direct/q/plugin.owned", json={"routing_key": "k"}).raise_for_status()
    refused = api("DELETE", f"queues/{vhost_name}/plugin.owned")  # AMQP (as apply deletes) answers 405
    assert refused.status_code == 400 and "protected" in refused.text, refused.text
    path = tmp_path / "topology.yaml"
    path.write_text(f"version: 1\nvhost: {vhost_name}\nqueues:\n  mine: {{}}\n")
    planned = run("plan", "--prune", "--json", str(path))
    assert planned.exit_code == 0, planned.output
    document = json.loads(planned.output)
    assert [(c["kind"], c["name"]) for c in document["changes"]] == [("queue", "mine")]
    notes = {item["name"]: item.get("note", "") for item in document["unmanaged"]}
    assert "protected by exchange 'amq.default'" in notes["plugin.owned"], notes
    applied = run("apply", "--prune", str(path))
    assert applied.exit_code == 0, applied.output
    assert rabbit.exists(vhost_name, "queue", "plugin.owned") and rabbit.exists(vhost_name, "queue", "mine")
    assert api("GET", f"queues/{vhost_name}/plugin.owned/bindings").json()[-1]["routing_key"] == "k"
    path.write_text(f"version: 1\nvhost: {vhost_name}\nqueues:\n  mine: {{}}\n  plugin.owned: {{type: quorum}}\n")
    migrated = run("apply", "--migrate", str(path))
    assert migrated.exit_code == 1
    assert "queue 'plugin.owned'" in migrated.output and "cannot be replaced" in migrated.output, migrated.output
    assert api("GET", f"queues/{vhost_name}/plugin.owned").json()["type"] == "classic"  # nothing written
    exported = run("export", "--vhost", vhost_name)
    assert exported.exit_code == 0, exported.output
    assert "plugin.owned" not in yaml.safe_load(exported.stdout)["queues"]
    assert "as the broker's protected queues (owned by exchange 'amq.default'" in exported.stderr
