"""`provision dlq`: list, show, replay, purge against the real broker, and the pure rules behind them."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from celery_worker import counts, drain, publisher, start_worker
from click.testing import CliRunner
from provision_cli import run as run_provision
from rabbit import AMQP_PORT, HOST, MANAGEMENT_URL, api, consume_all, parameters, queue_policy, wait_for

from provisioner.broker.pump import PREFETCH
from provisioner.cli import main
from provisioner.dlq.letters import Letter, NotADeadLetterQueue, destination, find_dead_letter_queue
from provisioner.topology import load

TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  shop: {type: topic}
queues:
  orders:
    bindings: [{exchange: shop, routing_key: order.created}]
    dead_letter: true
  billing:
    type: quorum
    bindings: [{exchange: shop, routing_key: invoice.#}]
    dead_letter: {queue: parking}
  parking: {type: quorum, delivery_limit: 1}
"""


@pytest.fixture
def shop(tmp_path: Path, vhost_name: str) -> tuple[Path, str]:
    topology = tmp_path / "topology.yaml"
    topology.write_text(textwrap.dedent(TOPOLOGY))
    result = CliRunner().invoke(main, ["apply", str(topology)], env={"TEST_VHOST": vhost_name})
    assert result.exit_code == 0, result.output
    return topology, vhost_name


def run(vhost: str, *args: str) -> tuple[int, str, str]:
    result = run_provision("dlq", *args, vhost=vhost)
    return result.exit_code, result.stdout, result.stderr


def publish(vhost: str, queue: str, messages: list[tuple[bytes, dict]]) -> None:
    """Put messages straight into a queue (confirmed), as a failing worker would have."""
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    for body, headers in messages:
        channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers, delivery_mode=2), mandatory=True)
    connection.close()


def fill(vhost: str, queue: str, messages: list[tuple[bytes, dict]]) -> None:
    """Put many messages straight into a queue quickly (no confirm each), then wait until all are counted."""
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    for body, headers in messages:
        channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers, delivery_mode=2))
    wait_for(lambda: channel.queue_declare(queue, passive=True).method.message_count == len(messages))
    connection.close()


def failed(task: str, exception: str, queue: str, n: int) -> tuple[bytes, dict]:
    headers = {"task": task, "x-failed-task": task, "x-exception": f"{exception}: boom {n}", "x-failed-queue": queue}
    return json.dumps([[n], {}, {}]).encode(), {**headers, "x-failed-at": "2026-01-01T00:00:00+00:00"}


# ---- pure -----------------------------------------------------------------------------------------


def test_destination_follows_our_headers_then_x_death_then_foreign_queue() -> None:
    death = {"reason": "expired", "queue": "orders", "exchange": "shop", "routing-keys": ["order.created"], "count": 1}
    ours = Letter(b"", {"x-failed-queue": "celery", "x-death": [death]})
    assert destination(ours).describe() == "queue 'celery'"
    broker = Letter(b"", {"x-death": [death]})
    assert destination(broker).describe() == "queue 'orders'"  # where it died, never its exchange's other queues
    assert destination(broker, foreign={"orders"}).describe() == "queue 'orders'"
    assert destination(broker, to="elsewhere").describe() == "queue 'elsewhere'"
    assert destination(Letter(b"plain")) is None


def test_previews_are_cut_and_never_binary_garbage() -> None:
    assert Letter(b"\x00\xff\xfe binary").preview() == "<binary, 10 bytes>"
    assert Letter(b"a" * 500).preview().endswith("... (500 bytes)")
    assert Letter(b'{"id": 1}\n').preview() == '{"id": 1}\\n'
    assert Letter("é".encode() * 150).preview().endswith("(300 bytes)")  # a character cut in half is not binary


def test_only_dead_letter_queues_are_dead_letter_queues(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(textwrap.dedent(TOPOLOGY).replace("${TEST_VHOST}", "v"))
    loaded = load([topology])
    assert find_dead_letter_queue(loaded, "parking").sources == ("billing",)
    assert find_dead_letter_queue(loaded, "parking").quorum
    with pytest.raises(NotADeadLetterQueue, match="a work queue"):
        find_dead_letter_queue(loaded, "orders")


# ---- against the broker ------------------------------------------------------------------------------


def test_show_on_a_quorum_queue_with_delivery_limit_1_loses_and_reorders_nothing(shop: tuple[Path, str]) -> None:
    topology, vhost = shop
    publish(vhost, "parking", [failed("t.a", "ValueError", "billing", n) for n in range(5)])
    for _ in range(5):  # a peek by requeue would have dropped every message after the second
        code, out, err = run(vhost, "show", str(topology), "parking", "-n", "3")
        assert code == 0, err
        assert "parking (vhost" in out and "#3  task t.a  exception ValueError: boom 2" in out
        assert counts(vhost, "parking")[0] == 5
    assert [json.loads(body)[0][0] for body, _ in drain(vhost, "parking")] == [0, 1, 2, 3, 4]


def test_show_json_on_a_classic_queue_keeps_order_and_shows_x_death(shop: tuple[Path, str]) -> None:
    topology, vhost = shop
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("shop", "order.created", b"\x00\x01binary", pika.BasicProperties(expiration="0"))
    channel.basic_publish("", "orders.dead", b"second", pika.BasicProperties())
    connection.close()
    wait_for(lambda: counts(vhost, "orders.dead")[0] == 2)
    for _ in range(3):
        code, out, err = run(vhost, "show", str(topology), "orders.dead", "--json")
        assert code == 0, err
        shown = json.loads(out)
        assert shown["messages"] == 2 and [m["body_preview"] for m in shown["shown"]] == ["<binary, 8 bytes>", "second"]
    death = shown["shown"][0]["x_death"][0]
    assert (death["reason"], death["queue"], death["exchange"], death["routing_keys"]) == (
        "expired",
        "orders",
        "shop",
        ["order.created"],
    )
    assert shown["shown"][0]["goes_back_to"] == {"exchange": "", "routing_key": "orders", "why": "x-death"}
    assert [body for body, _ in drain(vhost, "orders.dead")] == [b"\x00\x01binary", b"second"]


@pytest.mark.parametrize("dlq", ["orders.dead", "parking"])
def test_replay_moves_only_the_selected_and_keeps_the_rest_in_order(shop: tuple[Path, str], dlq: str) -> None:
    topology, vhost = shop
    kinds = [("t.a", "ValueError"), ("t.b", "ValueError"), ("t.a", "KeyError")] * 3
    publish(vhost, dlq, [failed(task, exc, "target", n) for n, (task, exc) in enumerate(kinds)])
    connection = pika.BlockingConnection(parameters(vhost))
    connection.channel().queue_declare("target", durable=True)
    connection.close()

    code, out, err = run(vhost, "replay", str(topology), dlq, "--task", "t.a", "--exception", "ValueError", "--dry-run")
    assert code == 0, err
    assert "would move #1 t.a (ValueError) -> queue 'target'" in out and "would replay 3 message(s)" in out
    assert counts(vhost, dlq)[0] == 9 and counts(vhost, "target")[0] == 0

    selected = ["--task", "t.a", "--exception", "ValueError"]
    code, out, err = run(vhost, "replay", str(topology), dlq, *selected, "--limit", "2")
    assert code == 0, err
    assert f"replayed 2 message(s) from {dlq}; 7 stay in it" in out
    assert [json.loads(b)[0][0] for b, _ in drain(vhost, "target")] == [0, 3]
    assert [json.loads(b)[0][0] for b, _ in drain(vhost, dlq)] == [1, 2, 4, 5, 6, 7, 8]


def test_replay_to_a_missing_target_exits_1_and_loses_nothing(shop: tuple[Path, str]) -> None:
    topology, vhost = shop
    publish(vhost, "parking", [failed("t.a", "ValueError", "gone", n) for n in range(3)])
    for _ in range(3):
        code, _, err = run(vhost, "replay", str(topology), "parking")
        assert code == 1
        assert "error: 3 message(s) stay in parking: queue 'gone' does not exist" in err and "Traceback" not in err
    assert [json.loads(b)[0][0] for b, _ in drain(vhost, "parking")] == [0, 1, 2]


def test_broker_dead_letters_go_back_to_the_queue_they_died_in_only(shop: tuple[Path, str]) -> None:
    topology, vhost = shop
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.queue_declare("audit", durable=True)  # a sibling: bound to the same exchange, it had its copy already
    channel.queue_bind("audit", "shop", "invoice.#")
    channel.confirm_delivery()
    channel.basic_publish("shop", "order.created", b"expired", pika.BasicProperties(expiration="0"))
    channel.basic_publish("shop", "invoice.paid", b"rejected", pika.BasicProperties())
    method, _, _ = channel.basic_get("billing")
    channel.basic_reject(method.delivery_tag, requeue=False)
    connection.close()
    wait_for(lambda: counts(vhost, "orders.dead")[0] == 1 and counts(vhost, "parking")[0] == 1)

    code, out, err = run(vhost, "list", str(topology))
    assert code == 0, err
    assert "orders.dead  (vhost" in out and "from orders): 1 message(s)" in out and "x-death:expired" in out
    assert "parking  (vhost" in out and "from billing): 1 message(s)" in out and "x-death:rejected" in out

    assert run(vhost, "replay", str(topology), "orders.dead")[0] == 0
    assert run(vhost, "replay", str(topology), "parking")[0] == 0
    assert counts(vhost, "orders.dead")[0] == 0 and counts(vhost, "parking")[0] == 0
    assert counts(vhost, "audit")[0] == 1  # its first copy of "rejected", no second one
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    arrived = [channel.basic_get(queue, auto_ack=True) for queue in ("orders", "billing")]
    connection.close()
    assert [(m.exchange, m.routing_key, body) for m, _, body in arrived] == [
        ("", "orders", b"expired"),
        ("", "billing", b"rejected"),
    ]


def test_purge_deletes_a_dead_letter_queue_only_with_force_and_never_a_work_queue(shop: tuple[Path, str]) -> None:
    topology, vhost = shop
    publish(vhost, "orders", [(b"work", {})])
    publish(vhost, "orders.dead", [(b"dead", {})] * 4)
    code, _, err = run(vhost, "purge", str(topology), "orders", "--force")
    assert code == 1 and "not a dead-letter queue of the topology (a work queue)" in err
    code, _, err = run(vhost, "purge", str(topology), "orders.dead")
    assert code == 1 and "--force" in err
    assert counts(vhost, "orders")[0] == 1 and counts(vhost, "orders.dead")[0] == 4
    code, out, err = run(vhost, "purge", str(topology), "orders.dead", "--force")
    assert code == 0 and "purged 4 message(s) from orders.dead" in out
    assert counts(vhost, "orders.dead")[0] == 0 and counts(vhost, "orders")[0] == 1


def test_wrong_password_is_one_line_without_the_password(shop: tuple[Path, str]) -> None:
    topology, vhost = shop
    wrong = f"amqp://guest:s3cret-pw@{HOST}:{AMQP_PORT}/"
    result = CliRunner().invoke(
        main,
        ["dlq", "list", str(topology), "--amqp-url", wrong, "--retry-seconds", "0"],
        env={"TEST_VHOST": vhost},
    )
    assert result.exit_code == 1 and "s3cret-pw" not in result.output and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and "refused the credentials" in result.stderr


@pytest.mark.parametrize("dlq", ["orders.dead", "parking"])
def test_replay_killed_mid_way_and_run_again_loses_nothing(shop: tuple[Path, str], dlq: str) -> None:
    topology, vhost = shop
    total = 5000  # the pipelined replay moves a thousand in well under a second: enough to be cut mid-way
    fill(vhost, dlq, [failed("t.a", "ValueError", "target", n) for n in range(total)])
    connection = pika.BlockingConnection(parameters(vhost))
    connection.channel().queue_declare("target", durable=True)
    connection.close()
    env = {**os.environ, "TEST_VHOST": vhost}
    command = [sys.executable, "-m", "provisioner.cli", "dlq", "replay", str(topology), dlq]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: counts(vhost, "target")[0] >= 500 or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "replay finished before it could be killed"
    assert counts(vhost, dlq)[0] > 0  # killed mid-way
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    assert counts(vhost, dlq)[0] == 0
    connection = pika.BlockingConnection(parameters(vhost))
    moved = [json.loads(body)[0][0] for body in consume_all(connection.channel(), "target")]
    connection.close()
    assert set(moved) == set(range(total))  # at least once: a kill duplicates what was in flight, loses none
    assert total <= len(moved) <= total + PREFETCH  # the in-flight window the README states


@pytest.fixture
def user(shop: tuple[Path, str]) -> Iterator[tuple[str, list[str]]]:
    """A fresh user (tag management) who may read and configure in the shop's vhost but write nothing."""
    _, vhost = shop
    name = f"test-dlq-{uuid.uuid4().hex[:8]}"
    api("PUT", f"users/{name}", json={"password": f"pw-{name}", "tags": "management"}).raise_for_status()
    granted = {"configure": ".*", "write": "^$", "read": ".*"}
    api("PUT", f"permissions/{quote(vhost, safe='')}/{name}", json=granted).raise_for_status()
    options = [
        "--amqp-url",
        f"amqp://{name}:pw-{name}@{HOST}:{AMQP_PORT}/",
        "--management-url",
        f"http://{name}:pw-{name}@{MANAGEMENT_URL.partition('://')[2]}",
    ]
    yield name, options
    api("DELETE", f"users/{name}")


def test_a_replay_the_broker_refuses_for_permissions_is_one_line_with_its_words_and_moves_nothing(
    shop: tuple[Path, str], user: tuple[str, list[str]]
) -> None:
    topology, vhost = shop
    publish(vhost, "orders.dead", [failed("t.a", "ValueError", "orders", n) for n in range(50)])
    name, options = user
    code, _, err = run(vhost, "replay", *options, str(topology), "orders.dead")
    assert code == 1 and err.count("\n") == 1, err
    assert "403 ACCESS_REFUSED" in err and "amq.default" in err and name in err, err
    assert "connection lost" not in err and "run the command again" not in err
    assert counts(vhost, "orders.dead")[0] == 50 and counts(vhost, "orders")[0] == 0


def test_letters_with_another_users_user_id_stay_with_the_reason_and_the_rest_move(
    shop: tuple[Path, str], user: tuple[str, list[str]]
) -> None:
    topology, vhost = shop
    name, _ = user
    api("PUT", f"permissions/{quote(vhost, safe='')}/{name}", json={"configure": ".*", "write": ".*", "read": ".*"})
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(HOST, AMQP_PORT, vhost, pika.PlainCredentials(name, f"pw-{name}"))
    )
    channel = connection.channel()
    channel.confirm_delivery()
    for n in range(40):  # every fourth one carries its publisher's user_id, as the broker allows only for that user
        body, headers = failed("t.a", "ValueError", "orders", n)
        properties = pika.BasicProperties(headers=headers, delivery_mode=2, user_id=name if n % 4 == 0 else None)
        channel.basic_publish("", "orders.dead", body, properties)
    connection.close()
    code, out, err = run(vhost, "replay", str(topology), "orders.dead")  # as guest
    assert code == 1
    assert "replayed 30 message(s) from orders.dead; 10 stay in it" in out
    assert f"10 message(s) stay in orders.dead: a message carries user_id '{name}', not user 'guest'" in err
    assert counts(vhost, "orders.dead")[0] == 10 and counts(vhost, "orders")[0] == 30


# ---- with a real worker --------------------------------------------------------------------------

WORKER_TOPOLOGY = """
version: 1
vhost: ${TEST_VHOST}
exchanges:
  celery: {type: direct}
  example: {type: topic}
queues:
  celery:
    bindings: [{exchange: celery, routing_key: celery}]
    dead_letter: true
  example:
    bindings: [{exchange: example, routing_key: com.example}]
    dead_letter: true
tasks:
  catalog.tasks.process_catalog_event: {queue: example, consume: foreign}
  e2e.*: {queue: celery}
celery: {default_queue: celery}
"""


def test_a_failed_task_is_listed_replayed_and_runs_once_fixed(tmp_path: Path, vhost_name: str) -> None:
    topology, vhost, env = tmp_path / "topology.yaml", vhost_name, {"TEST_VHOST": vhost_name}
    topology.write_text(textwrap.dedent(WORKER_TOPOLOGY))
    assert CliRunner().invoke(main, ["apply", str(topology)], env=env).exit_code == 0
    rendered = CliRunner().invoke(main, ["render", str(topology), "-o", str(tmp_path / "celeryconfig.py")], env=env)
    assert rendered.exit_code == 0, rendered.output
    (tmp_path / "fail.flag").write_text("the bug")
    worker = start_worker(tmp_path, vhost)
    try:
        publisher(tmp_path, vhost).send_task("e2e.flaky", args=[5])
        connection = pika.BlockingConnection(parameters(vhost))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("example", "com.example", b"{not json", pika.BasicProperties(delivery_mode=2))
        connection.close()
        wait_for(lambda: counts(vhost, "celery.dead")[0] == 1 and counts(vhost, "example.dead")[0] == 1, timeout=60)
    finally:
        worker.stop()

    code, out, err = run(vhost, "list", str(topology), "--json")
    assert code == 0, err
    listed = {row["name"]: row for row in json.loads(out)["dead_letter_queues"]}
    assert listed["celery.dead"]["messages"] == 1 and listed["celery.dead"]["sources"] == ["celery"]
    assert listed["celery.dead"]["failures"] == [{"task": "e2e.flaky", "exception": "RuntimeError", "count": 1}]
    assert listed["example.dead"]["failures"] == [{"task": "-", "exception": "UndecodableBody", "count": 1}]
    oldest = datetime.datetime.fromisoformat(listed["celery.dead"]["oldest"])
    assert oldest <= datetime.datetime.now(datetime.timezone.utc)

    code, out, _ = run(vhost, "replay", str(topology), "celery.dead", "--dry-run")
    assert code == 0 and "would move #1 e2e.flaky (RuntimeError) -> queue 'celery'" in out
    assert counts(vhost, "celery.dead")[0] == 1 and counts(vhost, "celery")[0] == 0

    code, out, _ = run(vhost, "replay", str(topology), "example.dead")  # undecodable: back to its foreign queue
    assert code == 0 and counts(vhost, "example")[0] == 1 and counts(vhost, "example.dead")[0] == 0
    assert drain(vhost, "example")[0][0] == b"{not json"

    (tmp_path / "fail.flag").unlink()  # the fix is deployed
    code, out, _ = run(vhost, "replay", str(topology), "celery.dead")
    assert code == 0 and "replayed 1 message(s) from celery.dead; 0 stay in it" in out
    worker = start_worker(tmp_path, vhost)
    try:
        wait_for(lambda: {"task": "flaky", "value": 5} in worker.records(), timeout=60)
        wait_for(lambda: counts(vhost, "celery")[0] == 0)
    finally:
        worker.stop()
    assert counts(vhost, "celery.dead")[0] == 0


def test_a_replay_the_broker_nacks_for_a_while_goes_on_and_one_that_lasts_ends_in_one_line(
    shop: tuple[Path, str],
) -> None:
    """A nack is how a queue restarting (its node killed) refuses for a moment: the pass runs again until
    --retry-seconds; nothing unconfirmed is acked, so nothing is lost or reordered either way."""
    topology, vhost = shop
    letters = [failed("t.a", "ValueError", "target", n) for n in range(50)]
    publish(vhost, "orders.dead", letters)
    connection = pika.BlockingConnection(parameters(vhost))
    connection.channel().queue_declare("target", durable=True)
    connection.close()
    refusing = {"pattern": "^target$", "apply-to": "queues", "priority": 100}
    refusing["definition"] = {"max-length": 0, "overflow": "reject-publish"}  # every copy nacked
    policy = f"policies/{quote(vhost, safe='')}/refuse-target"
    api("PUT", policy, json=refusing).raise_for_status()
    wait_for(lambda: queue_policy(vhost, "target") == "refuse-target")
    command = [sys.executable, "-m", "provisioner.cli", "dlq", "replay", str(topology), "orders.dead", "--task", "t.a"]
    env = {**os.environ, "TEST_VHOST": vhost}
    lasting = subprocess.run([*command, "--retry-seconds", "2"], env=env, capture_output=True, text=True, check=False)
    assert lasting.returncode == 1
    last = lasting.stderr.strip().splitlines()[-1]
    assert last.startswith("error: replay of 'orders.dead' stopped") and "nack" in last, lasting.stderr
    assert counts(vhost, "orders.dead")[0] == 50 and counts(vhost, "target")[0] == 0
    process = subprocess.Popen(
        [*command, "--retry-seconds", "60"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # the first nack: the broker refused while the policy stood
    assert "retrying in" in first and "nack" in first, first
    api("DELETE", policy).raise_for_status()  # the queue takes copies again, as a restarted queue does
    out, err = process.communicate()
    assert process.returncode == 0, first + err
    assert "replayed 50 message(s)" in out, out
    assert [json.loads(body)[0][0] for body, _ in drain(vhost, "target")] == list(range(50))
    assert counts(vhost, "orders.dead")[0] == 0


def test_list_counts_every_queue_of_a_vhost_on_one_connection_and_a_missing_one_is_one_line(
    shop: tuple[Path, str],
) -> None:
    """Empty queues are counted, full ones sampled; a dead-letter queue missing on the broker is one clear line."""
    topology, vhost = shop
    publish(vhost, "orders.dead", [failed("t.a", "ValueError", "orders", n) for n in range(3)])
    code, out, err = run(vhost, "list", str(topology), "--json")
    assert code == 0, err
    listed = {row["name"]: row["messages"] for row in json.loads(out)["dead_letter_queues"]}
    assert listed == {"orders.dead": 3, "parking": 0}, out
    assert counts(vhost, "orders.dead")[0] == 3  # sampled, never taken
    api("DELETE", f"queues/{quote(vhost, safe='')}/parking").raise_for_status()
    code, out, err = run(vhost, "list", str(topology))
    assert code == 1 and out == ""
    assert err.strip() == f"error: dead-letter queue 'parking' does not exist in vhost '{vhost}' (run provision apply)"
