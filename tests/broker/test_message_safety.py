"""Issue 22, plan-time half, against the real broker: a message counts whether ready or unacknowledged,
on every queue type; a limit change that drops or expires messages is refused without --force.

Every count is read over AMQP (passive declare) after the command, with the numbers in the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
import rabbit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provision_cli import run, write
from rabbit import api, endpoints, fresh_vhost, parameters, queue_policy, wait_for

from provisioner.broker.management import Management
from provisioner.broker.reads import read_requests
from provisioner.planning import make_plan
from provisioner.topology import load


def ready(vhost: str, queue: str) -> int | None:
    """Ready messages over AMQP (passive declare); None when the queue does not exist."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return None
    finally:
        if connection.is_open:
            connection.close()


def publish(vhost: str, queue: str, count: int, body: bytes = b"m") -> None:
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    for _ in range(count):
        channel.basic_publish("", queue, body)
    connection.close()


@contextmanager
def holding(vhost: str, queue: str, count: int, how: str) -> Iterator[None]:
    """Hold ``count`` messages unacknowledged: a basic.get poller, a consumer mid-work, or one that cancelled."""
    if count == 0:
        yield
        return
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    if how == "poller":
        for _ in range(count):
            method, _, _ = channel.basic_get(queue, auto_ack=False)
            assert method is not None
    else:
        channel.basic_qos(prefetch_count=count)
        got: list[int] = []
        tag = channel.basic_consume(queue, lambda *_: got.append(1))
        while len(got) < count:
            connection.process_data_events(time_limit=0.1)
        if how == "cancelled":
            channel.basic_cancel(tag)
    try:
        yield
    finally:
        connection.close()  # what it held goes back to the queue


KEEP_AND_GONE = """
version: 1
vhost: ${TEST_VHOST}
queues:
  keep: {}
  gone: {type: TYPE}
"""
KEEP = """
version: 1
vhost: ${TEST_VHOST}
queues:
  keep: {}
"""


@pytest.mark.parametrize(
    ("queue_type", "how"),
    [
        ("classic", "poller"),
        ("classic", "consumer"),
        ("classic", "cancelled"),
        ("quorum", "poller"),
        ("quorum", "consumer"),
    ],
)
def test_prune_never_deletes_a_queue_whose_messages_are_all_unacknowledged(
    tmp_path: Path, vhost_name: str, queue_type: str, how: str
) -> None:
    assert run("apply", write(tmp_path, KEEP_AND_GONE.replace("TYPE", queue_type)), vhost=vhost_name).exit_code == 0
    publish(vhost_name, "gone", 4)
    keep = write(tmp_path, KEEP, "keep.yaml")
    with holding(vhost_name, "gone", 4, how):
        assert ready(vhost_name, "gone") == 0  # what a passive declare (and if-empty) sees
        if queue_type == "classic":  # a quorum queue's plan waits for a tick, like the apply below: once is enough
            plan = run("plan", "--prune", keep, vhost=vhost_name)
            assert "- queue gone" in plan.output and "[4 messages (0 ready, 4 unacked)" in plan.output, plan.output
        refused = run("apply", "--prune", keep, vhost=vhost_name)
        assert refused.exit_code != 0
        lines = [line for line in refused.output.splitlines() if "'gone'" in line]
        assert len(lines) == 1 and "4 messages (0 ready, 4 unacked)" in lines[0], refused.output
        assert ready(vhost_name, "gone") == 0
    assert ready(vhost_name, "gone") == 4  # the holder let go: all four came back
    assert run("apply", "--prune", "--force", keep, vhost=vhost_name).exit_code == 0
    assert ready(vhost_name, "gone") is None


def test_prune_never_deletes_a_stream_read_right_after_a_publish(tmp_path: Path, vhost_name: str) -> None:
    assert run("apply", write(tmp_path, KEEP_AND_GONE.replace("TYPE", "stream")), vhost=vhost_name).exit_code == 0
    publish(vhost_name, "gone", 5)
    keep = write(tmp_path, KEEP, "keep.yaml")
    refused = run("apply", "--prune", keep, vhost=vhost_name)  # at once: its passive count still says 0
    lines = [line for line in refused.output.splitlines() if "'gone'" in line]
    assert refused.exit_code != 0 and len(lines) == 1 and "5 messages (5 ready, 0 unacked)" in lines[0], refused.output
    assert wait_for(lambda: ready(vhost_name, "gone") == 5)
    assert run("apply", "--prune", "--force", keep, vhost=vhost_name).exit_code == 0
    assert ready(vhost_name, "gone") is None


def test_prune_deletes_an_empty_stream(tmp_path: Path, vhost_name: str) -> None:
    assert run("apply", write(tmp_path, KEEP_AND_GONE.replace("TYPE", "stream")), vhost=vhost_name).exit_code == 0
    assert run("apply", "--prune", write(tmp_path, KEEP, "keep.yaml"), vhost=vhost_name).exit_code == 0
    assert ready(vhost_name, "gone") is None


JOBS = """
version: 1
vhost: ${TEST_VHOST}
queues:
  jobs: {max_length: LENGTH}
"""


def test_migrate_refuses_a_queue_holding_unacknowledged_messages(tmp_path: Path, vhost_name: str) -> None:
    assert run("apply", write(tmp_path, JOBS.replace("LENGTH", "100")), vhost=vhost_name).exit_code == 0
    publish(vhost_name, "jobs", 5)
    raised = write(tmp_path, JOBS.replace("LENGTH", "200"), "raised.yaml")
    with holding(vhost_name, "jobs", 3, "poller"):
        refused = run("apply", "--migrate", raised, vhost=vhost_name)
        lines = [line for line in refused.output.splitlines() if "'jobs'" in line]
        assert refused.exit_code != 0 and len(lines) == 1, refused.output
        assert "5 messages (2 ready, 3 unacked)" in lines[0]
    assert ready(vhost_name, "jobs") == 5
    assert run("apply", "--migrate", raised, vhost=vhost_name).exit_code == 0
    assert ready(vhost_name, "jobs") == 5


FAMILIES = """
version: 1
vhost: ${TEST_VHOST}
queues:
  q-length: {}
  q-bytes: {}
  q-ttl: {}
  q-expires: {}
  q-overflow: {}
  q-delivery: {type: quorum}
  q-operator: {}
  q-stream: {type: stream}
policies:
  length: {pattern: "^q-length$", definition: {max-length: LENGTH}}
  bytes: {pattern: "^q-bytes$", definition: {max-length-bytes: BYTES}}
  ttl: {pattern: "^q-ttl$", definition: {message-ttl: TTL}}
  expires: {pattern: "^q-expires$", definition: {expires: EXPIRES}}
  overflow: {pattern: "^q-overflow$", definition: {max-length: 5, overflow: OVERFLOW}}
  delivery: {pattern: "^q-delivery$", definition: {delivery-limit: DELIVERY}}
  retention: {pattern: "^q-stream$", definition: {max-age: AGE}}
operator_policies:
  cap: {pattern: "^q-operator$", apply_to: queues, definition: {max-length: CAP}}
"""
LOOSE = {"LENGTH": 50, "BYTES": 100000, "TTL": 3600000, "EXPIRES": 3600000, "OVERFLOW": "reject-publish"}
LOOSE |= {"DELIVERY": 100, "CAP": 1000, "AGE": "7D"}
TIGHT = {"LENGTH": 5, "BYTES": 300, "TTL": 1, "EXPIRES": 1000, "OVERFLOW": "drop-head", "DELIVERY": 1, "CAP": 2}
TIGHT |= {"AGE": "1h"}


def families(values: dict) -> str:
    text = FAMILIES
    for key, value in values.items():
        text = text.replace(key, str(value))
    return text


def test_each_limit_family_changed_in_place_is_refused_then_done_with_force(tmp_path: Path, vhost_name: str) -> None:
    assert run("apply", write(tmp_path, families(LOOSE)), vhost=vhost_name).exit_code == 0
    counts = (("q-length", 20), ("q-ttl", 6), ("q-expires", 3), ("q-delivery", 4), ("q-operator", 7), ("q-stream", 9))
    for queue, count in counts:
        publish(vhost_name, queue, count)
    publish(vhost_name, "q-bytes", 10, b"x" * 100)
    publish(vhost_name, "q-overflow", 5)
    tight = write(tmp_path, families(TIGHT), "tight.yaml")
    with holding(vhost_name, "q-overflow", 3, "poller"):
        publish(vhost_name, "q-overflow", 3)  # 5 ready, 3 unacked: a limit of 5 with reject-publish keeps all 8
        plan = run("plan", tight, vhost=vhost_name)
        assert "queue q-length: max-length 50 -> 5 (policy 'length'); holds 20 messages (20 ready, 0 unacked)" in (
            plan.output
        ), plan.output
        refused = run("apply", tight, vhost=vhost_name)
        assert refused.exit_code != 0
        expected = {
            "'q-length'": ("20 messages", "max-length 50 -> 5"),
            "'q-bytes'": ("10 messages", "max-length-bytes 100000 -> 300"),
            "'q-ttl'": ("6 messages", "message-ttl 3600000 -> 1"),
            "'q-expires'": ("3 messages", "expires 3600000 -> 1000"),
            "'q-overflow'": ("8 messages (5 ready, 3 unacked)", "overflow reject-publish -> drop-head"),
            "'q-delivery'": ("4 messages", "delivery-limit 100 -> 1"),
            "'q-operator'": ("7 messages", "operator policy 'cap' sets max-length 1000 -> 2"),
            "'q-stream'": ("9 messages (9 ready", "policy 'retention' sets max-age 7D -> 1h"),
        }
        for queue, words in expected.items():
            lines = [line for line in refused.output.splitlines() if queue in line]
            assert len(lines) == 1 and all(word in lines[0] for word in words), (queue, refused.output)
        assert [ready(vhost_name, q) for q in ("q-length", "q-bytes", "q-ttl", "q-operator")] == [20, 10, 6, 7]
        assert run("apply", "--force", tight, vhost=vhost_name).exit_code == 0
    assert wait_for(lambda: ready(vhost_name, "q-length") == 5)
    assert wait_for(lambda: ready(vhost_name, "q-bytes") == 3)
    # 3.10 and 4.0 keep the TTL a message came with; refused all the same: it is the queue's limit now
    assert wait_for(lambda: queue_policy(vhost_name, "q-ttl") == "ttl")
    assert wait_for(lambda: ready(vhost_name, "q-operator") == 2)
    assert wait_for(lambda: ready(vhost_name, "q-overflow") == 5)  # the 3 returned went over the limit
    # polled through the management API: a passive declare renews a queue's lease on 4.0
    gone = f"queues/{quote(vhost_name, safe='')}/q-expires"
    assert wait_for(lambda: api("GET", gone).status_code == 404)
    assert wait_for(lambda: queue_policy(vhost_name, "q-delivery") == "delivery")
    assert wait_for(lambda: queue_policy(vhost_name, "q-stream") == "retention")
    # an hour: segments are cut by age only; a stream's passive count lags its log for a moment after a change
    assert wait_for(lambda: ready(vhost_name, "q-stream") == 9)


REPLACED = """
version: 1
vhost: ${TEST_VHOST}
queues:
  jobs: {FIELDS}
"""


def test_a_replacement_that_sets_a_message_ttl_is_refused_then_migrated_with_force(
    tmp_path: Path, vhost_name: str
) -> None:
    assert run("apply", write(tmp_path, REPLACED.replace("FIELDS", "")), vhost=vhost_name).exit_code == 0
    publish(vhost_name, "jobs", 6)
    ttl = write(tmp_path, REPLACED.replace("FIELDS", "message_ttl: 3600000"), "ttl.yaml")
    refused = run("apply", "--migrate", ttl, vhost=vhost_name)
    lines = [line for line in refused.output.splitlines() if "'jobs'" in line]
    assert refused.exit_code != 0 and len(lines) == 1, refused.output
    assert "6 messages (6 ready, 0 unacked)" in lines[0] and "argument x-message-ttl sets message-ttl" in lines[0]
    assert ready(vhost_name, "jobs") == 6
    document = json.loads(run("plan", "--json", ttl, vhost=vhost_name).output)
    (loss,) = document["losses"]
    assert loss["held"]["messages"] == 6 and loss["limit"]["after"] == 3600000
    assert run("apply", "--migrate", "--force", ttl, vhost=vhost_name).exit_code == 0
    assert ready(vhost_name, "jobs") == 6  # an hour: none expired on the way


MANY = """
version: 1
vhost: ${TEST_VHOST}
queues:
QUEUES
policies:
  cap: {pattern: "^q", definition: {max-length: LENGTH}}
"""


def test_counts_cost_one_request_per_vhost_and_only_for_queues_a_change_touches(
    tmp_path: Path, vhost_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MANY.replace("QUEUES", "\n".join(f"  q{n}: {{}}" for n in range(12)) + "\n  other: {}")
    assert run("apply", write(tmp_path, text.replace("LENGTH", "100")), vhost=vhost_name).exit_code == 0
    for n in range(12):
        publish(vhost_name, f"q{n}", n)
    monkeypatch.setenv("TEST_VHOST", vhost_name)
    same = load([write(tmp_path, text.replace("LENGTH", "100"), "same.yaml")])
    management = Management(endpoints())
    assert make_plan(same, management, endpoints=endpoints()).is_empty
    assert management.requests_made == read_requests(1, rabbit.version_text())  # no change, no count
    management = Management(endpoints())
    plan = make_plan(
        load([write(tmp_path, text.replace("LENGTH", "5"), "low.yaml")]), management, endpoints=endpoints()
    )
    assert (
        management.requests_made == read_requests(1, rabbit.version_text()) + 1
    )  # and the totals of the twelve queues the policy reaches
    assert {(h.queue, h.ready) for h in plan.held} == {(f"q{n}", n) for n in range(12)}
    assert sorted(loss.held.queue for loss in plan.losses) == sorted(f"q{n}" for n in range(6, 12))


QUORUM_CAPPED = """
version: 1
vhost: ${TEST_VHOST}
queues:
  work: {type: quorum}
policies:
  cap: {pattern: "^work$", definition: {max-length: LENGTH}}
"""


def test_a_quorum_queue_whose_loss_turns_on_its_unacknowledged_messages_waits_for_them(
    tmp_path: Path, vhost_name: str
) -> None:
    assert run("apply", write(tmp_path, QUORUM_CAPPED.replace("LENGTH", "100")), vhost=vhost_name).exit_code == 0
    publish(vhost_name, "work", 10)
    lower = write(tmp_path, QUORUM_CAPPED.replace("LENGTH", "5"), "lower.yaml")
    with holding(vhost_name, "work", 8, "consumer"):  # 2 ready fit under 5; the 8 a worker holds do not
        refused = run("apply", lower, vhost=vhost_name)
        lines = [line for line in refused.output.splitlines() if "'work'" in line]
        assert refused.exit_code != 0 and len(lines) == 1, refused.output
        assert "10 messages (2 ready, 8 unacked)" in lines[0] and "max-length 100 -> 5" in lines[0]
        assert ready(vhost_name, "work") == 2
        assert run("apply", "--force", lower, vhost=vhost_name).exit_code == 0
    assert wait_for(lambda: ready(vhost_name, "work") == 5)  # the worker let go: 10 came back, 5 were kept


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ready_left=st.integers(0, 3), polled=st.integers(0, 3), consumed=st.integers(0, 3))
def test_plan_counts_every_message_of_a_queue_to_prune_and_apply_refuses_unless_it_is_empty(
    tmp_path: Path, broker: None, ready_left: int, polled: int, consumed: int
) -> None:
    with fresh_vhost() as vhost:
        assert run("apply", write(tmp_path, KEEP_AND_GONE.replace("TYPE", "classic")), vhost=vhost).exit_code == 0
        publish(vhost, "gone", ready_left + polled + consumed)
        keep = write(tmp_path, KEEP, "keep.yaml")
        with holding(vhost, "gone", polled, "poller"), holding(vhost, "gone", consumed, "consumer"):
            document = json.loads(run("plan", "--json", "--prune", keep, vhost=vhost).output)
            (change,) = [c for c in document["changes"] if c["name"] == "gone"]
            total = ready_left + polled + consumed
            assert (change["messages"], change["unacked"]) == (total, polled + consumed)
            assert change["consumers"] == (1 if consumed else 0)
            applied = run("apply", "--prune", keep, vhost=vhost)
            assert (applied.exit_code == 0) == (total == 0), applied.output
            assert ready(vhost, "gone") == (None if total == 0 else ready_left)


def test_a_replacement_that_lowers_x_max_length_below_the_count_is_refused_with_the_counts(
    tmp_path: Path, vhost_name: str
) -> None:
    assert run("apply", write(tmp_path, JOBS.replace("LENGTH", "100")), vhost=vhost_name).exit_code == 0
    publish(vhost_name, "jobs", 12)
    with holding(vhost_name, "jobs", 2, "poller"):
        refused = run("apply", "--migrate", write(tmp_path, JOBS.replace("LENGTH", "11"), "low.yaml"), vhost=vhost_name)
        lines = [line for line in refused.output.splitlines() if "'jobs'" in line and "x-max-length" in line]
        assert refused.exit_code != 0 and len(lines) == 1, refused.output
        assert "12 messages (10 ready, 2 unacked)" in lines[0] and "max-length 100 -> 11" in lines[0]
        assert "drops the oldest 1 " in lines[0]
    assert ready(vhost_name, "jobs") == 12
