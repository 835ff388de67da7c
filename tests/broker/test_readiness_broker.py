"""Every upgrade-readiness rule against the broker under test: what the rule says this version does, it does.

Each case writes one setting (a queue argument, a policy or operator policy
key, a non-durable queue), finds it with the readiness rules, asks the verdict
for the broker's version (and its deprecated features, as the broker reports
them) and then declares it: refused exactly where the verdict says "refuses".
On the 4.3-deny leg this is RabbitMQ 4.3.6 with every deprecated feature denied.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
import rabbit
from click.testing import CliRunner
from rabbit import DENY_DEPRECATED, api, endpoints, fresh_vhost, parameters, wait_for

from provisioner.broker.management import Management
from provisioner.cli import main
from provisioner.topology import readiness
from provisioner.topology.model import CelerySettings, OperatorPolicy, Policy, Queue, TaskRoute, Topology
from provisioner.topology.verdicts import Verdict, verdict
from provisioner.version_notes import read_denied

Declare = Callable[[str], bool]  # declares the setting in a vhost; True when the broker took it


def _queue(name: str, durable: bool = True, arguments: dict[str, object] | None = None) -> Declare:
    def declare(vhost: str) -> bool:
        connection = pika.BlockingConnection(parameters(vhost))
        try:
            connection.channel().queue_declare(name, durable=durable, arguments=arguments)
            return True
        except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker):
            return False
        finally:
            if connection.is_open:
                connection.close()

    return declare


def _policy(kind: str, definition: dict[str, object], apply_to: str = "queues") -> Declare:
    def declare(vhost: str) -> bool:
        body = {"pattern": "^nothing$", "definition": definition, "apply-to": apply_to}
        answer = api("PUT", f"{kind}/{quote(vhost, safe='')}/rule", json=body)
        assert answer.status_code in (201, 204, 400), answer.text
        return answer.status_code != 400

    return declare


def _model(case: str) -> Topology:
    kind, setting = CASES[case][0], CASES[case][1]
    if kind == "queue":
        return Topology(queues=(Queue("v", "q", durable=setting != "durable", arguments=CASES[case][2]),))
    model = Policy if kind == "policy" else OperatorPolicy
    return Topology(policies=(model("v", "rule", "^nothing$", CASES[case][2]),))


LAZY: dict[str, object] = {"x-queue-mode": "lazy"}
V1: dict[str, object] = {"x-queue-version": 1}
LOCATOR: dict[str, object] = {"x-queue-master-locator": "min-masters"}
TIMEOUT: dict[str, object] = {"x-consumer-timeout": 60000}
# case: (where the setting is written, the setting, the arguments or policy definition, how to declare it)
CASES: dict[str, tuple[str, str, dict[str, object], Declare]] = {
    "mirroring policy": ("policy", "ha-mode", {"ha-mode": "all"}, _policy("policies", {"ha-mode": "all"})),
    "mirroring operator policy": (
        "operator",
        "ha-mode",
        {"ha-mode": "all"},
        _policy("operator-policies", {"ha-mode": "all"}),
    ),
    "queue mode argument": ("queue", "x-queue-mode", LAZY, _queue("lazy", arguments=LAZY)),
    "queue mode policy": ("policy", "queue-mode", {"queue-mode": "lazy"}, _policy("policies", {"queue-mode": "lazy"})),
    "queue mode operator policy": (
        "operator",
        "queue-mode",
        {"queue-mode": "lazy"},
        _policy("operator-policies", {"queue-mode": "lazy"}),
    ),
    "queue version 1 argument": ("queue", "x-queue-version", V1, _queue("v1", arguments=V1)),
    "queue version 1 policy": (
        "policy",
        "queue-version",
        {"queue-version": 1},
        _policy("policies", {"queue-version": 1}),
    ),
    "master locator argument": ("queue", "x-queue-master-locator", LOCATOR, _queue("loc", arguments=LOCATOR)),
    "master locator policy": (
        "policy",
        "queue-master-locator",
        {"queue-master-locator": "random"},
        _policy("policies", {"queue-master-locator": "random"}),
    ),
    "master locator operator policy": (
        "operator",
        "queue-master-locator",
        {"queue-master-locator": "random"},
        _policy("operator-policies", {"queue-master-locator": "random"}),
    ),
    "transient queue": ("queue", "durable", {}, _queue("transient", durable=False)),
    "classic consumer timeout argument": ("queue", "x-consumer-timeout", TIMEOUT, _queue("timeout", arguments=TIMEOUT)),
    "classic consumer timeout policy": (
        "policy",
        "consumer-timeout",
        {"consumer-timeout": 60000},
        _policy("policies", {"consumer-timeout": 60000}),
    ),
}


def _verdict(topology: Topology, setting: str) -> Verdict | None:
    found = [f for f in readiness.findings(topology) if f.setting == setting]
    assert len(found) == 1, found  # the rule finds the setting (else the case tests nothing)
    version_text = api("GET", "overview").json()["rabbitmq_version"]
    return verdict(found[0], version_text, read_denied(Management(endpoints())))


@pytest.mark.broker
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_broker_does_what_the_rule_says_for_its_version(case: str) -> None:
    where, setting, _, declare = CASES[case]
    said = _verdict(_model(case), setting)
    with fresh_vhost("rule") as vhost:
        took = declare(vhost)
    effect = said.effect if said is not None else "takes"
    if effect == "may-refuse":  # a 4.0 broker cannot say whether it denies the feature; the suite knows
        effect = "refuses" if DENY_DEPRECATED else "takes"
    known = where == "queue" or rabbit.knows_policy_key("policy" if where == "policy" else "operator policy", setting)
    assert took is (effect != "refuses" and known), (case, said)


# --- The delivery-limit rules: quorum queues redelivering a message ----------------------------------------


def _requeues_until_gone(vhost: str, queue: str, most: int) -> int:
    """Deliveries of the queue's one message, each requeued with basic.nack (as Celery's Reject(requeue=True))."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        channel = connection.channel()
        deliveries = 0
        while deliveries < most:
            method, _, _ = channel.basic_get(queue)
            if method is None:
                break
            deliveries += 1
            channel.basic_nack(method.delivery_tag, requeue=True)
        return deliveries
    finally:
        connection.close()


def _one_message(vhost: str, queue: str, arguments: dict[str, object]) -> None:
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum", **arguments})
        channel.basic_publish("", queue, b"poison", pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


@pytest.mark.broker
def test_a_delivery_limit_bounds_celerys_requeues_only_before_4_3() -> None:
    """The 4.3 rule: a quorum queue Celery consumes, limit 2; a message requeued 6 times is still there on 4.3."""
    topology = Topology(
        queues=(Queue("v", "work", "quorum", arguments={"x-delivery-limit": 2}),),
        tasks=(TaskRoute("app.*", "work"),),
        celery=CelerySettings(vhost="v", default_queue="work"),
    )
    said = _verdict(topology, "x-delivery-limit")
    with fresh_vhost("requeue") as vhost:
        _one_message(vhost, "work", {"x-delivery-limit": 2})
        deliveries = _requeues_until_gone(vhost, "work", most=6)
    bounded = deliveries == 3  # the first delivery and 2 more, then dead-lettered (here: dropped)
    assert bounded is rabbit.requeues_count_as_deliveries()
    assert (said is not None and said.effect == "changes") is (not bounded), said
    assert deliveries in (3, 6)


@pytest.mark.broker
def test_a_quorum_queue_without_a_limit_drops_its_21st_failed_delivery_on_4x() -> None:
    """The default-limit rule, counted with failed deliveries (a consumer's channel gone), which 4.3 still counts."""
    with fresh_vhost("default-limit") as vhost:
        _one_message(vhost, "work", {})
        connection = pika.BlockingConnection(parameters(vhost))
        limit = rabbit.default_delivery_limit()
        gets = 25 if limit is None else limit + 1
        try:
            for delivery in range(1, gets + 1):
                channel = connection.channel()
                method, _, _ = channel.basic_get("work")
                assert method is not None, f"get {delivery}: the message did not come back"
                channel.close()  # a failed delivery: its channel gone
                if delivery < gets or limit is None:  # it comes back: wait for it (the return is not instant)
                    counter = connection.channel()
                    wait_for(lambda c=counter: c.queue_declare("work", passive=True).method.message_count == 1)
                    counter.close()
            if limit is not None:  # dropped at its last return: neither ready nor held, once the totals tick
                wait_for(lambda: _totals(vhost, "work") == (0, 0), timeout=60)
                assert connection.channel().queue_declare("work", passive=True).method.message_count == 0
        finally:
            connection.close()


def _totals(vhost: str, queue: str) -> tuple[int, int]:
    """Ready and unacknowledged messages as the queue itself counts them (also where statistics are off)."""
    params = {"columns": "name,messages_ready,messages_unacknowledged", "disable_stats": "true"}
    rows = api("GET", f"queues/{quote(vhost, safe='')}", params=params | {"enable_queue_totals": "true"}).json()
    row = next(row for row in rows if row["name"] == queue)
    return int(row.get("messages_ready") or 0), int(row.get("messages_unacknowledged") or 0)


# --- plan says, per object, what this broker's version does ----------------------------------------------

PLANNED = """
version: 1
vhost: ${TEST_VHOST}
queues:
  v1: {arguments: {x-queue-version: 1}}
  lazy: {queue_mode: lazy}
  loc: {arguments: {x-queue-master-locator: min-masters}}
  tmp: {durable: false}
  slow: {arguments: {x-consumer-timeout: 60000}}
"""


@pytest.mark.broker
def test_plan_says_per_object_what_the_brokers_version_does_and_apply_writes_nothing_it_would_refuse(
    tmp_path: Path, vhost_name: str
) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(PLANNED)
    env = {"TEST_VHOST": vhost_name}
    planned = CliRunner().invoke(main, ["plan", str(path)], env=env)
    at = api("GET", "overview").json()["rabbitmq_version"]
    four_three, four = rabbit.version() >= (4, 3), rabbit.version() >= (4, 0)
    refused = {
        "v1": rabbit.refuses_queue_version_1(),
        "loc": rabbit.refuses_queue_master_locator(),
        "tmp": rabbit.refuses_transient_queues(),
        "slow": four_three,
    }
    lines = {name: next(line for line in planned.output.splitlines() if f"+ queue {name} " in line) for name in refused}
    for name, refuses in refused.items():
        assert (f"RabbitMQ {at} refuses" in lines[name]) is refuses, lines[name]
        assert (f"queue {name!r} in vhost {vhost_name!r}: RabbitMQ {at} refuses" in planned.output) is refuses
    assert ("ignores x-queue-mode lazy" in planned.output) is four
    may = "would refuse x-queue-master-locator min-masters if deprecated feature queue_master_locator is denied"
    assert (may in lines["loc"]) is (four and not four_three and not rabbit.DENY_DEPRECATED)  # 4.0 cannot say
    applied = CliRunner().invoke(main, ["apply", str(path)], env=env)
    assert planned.exit_code == applied.exit_code == (1 if any(refused.values()) else 0), applied.output
    exists = api("GET", f"vhosts/{quote(vhost_name, safe='')}").status_code == 200
    assert exists is not any(refused.values())  # refused: nothing written, not even the vhost
