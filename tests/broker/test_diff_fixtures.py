"""The recorded diff cases stay true: each is set up again on the real broker, read, and compared.

``PROVISION_RECORD=1 pytest tests/broker/test_diff_fixtures.py`` writes the cases anew (topology.yaml,
live.json, plan.txt, plan.json); without it, a case whose broker answers no longer match fails.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
from celery import Celery
from diff_cases import FOLDER, plan_for, plan_json, plan_of, plan_text, recorded
from rabbit import amqp_url, api, endpoints, parameters

import provisioner
from provisioner.broker.management import Management
from provisioner.live_state import live_from_definitions
from provisioner.migration.amqp import run_migration
from provisioner.topology.model import Queue

ROOT = Path(__file__).resolve().parent.parent.parent
RECORD = os.environ.get("PROVISION_RECORD") == "1"


class Crash(Exception):
    """Stands for a process killed in the middle of a migration."""


def seed(vhost: str) -> str:
    return (ROOT / "topologies" / "seed.yaml").read_text().replace("\nvhost: /\n", f"\nvhost: {vhost}\n")


def apply(text: str) -> None:
    provisioner.apply_topology(provisioner.parse_topology(text), provisioner.connect())


def publish(vhost: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    for n in range(count):
        channel.basic_publish("", queue, f"m{n}".encode(), pika.BasicProperties(delivery_mode=2))
    connection.close()


def seed_applied(vhost: str) -> str:
    """The blog post's topology, applied, with a message waiting: the plan is empty."""
    apply(seed(vhost))
    publish(vhost, "example", 2)
    return seed(vhost)


def shop_applied(vhost: str) -> str:
    text = (ROOT / "topologies" / "shop.yaml").read_text().replace("${SHOP_VHOST:-shop}", vhost)
    apply(text)
    return text


def celery_declared(vhost: str) -> str:
    """What a plain Celery app declares for its default queue, before anyone ran provision: the seed plans on it."""
    api("PUT", f"vhosts/{quote(vhost, safe='')}").raise_for_status()
    api("PUT", f"permissions/{quote(vhost, safe='')}/guest", json={"configure": ".*", "write": ".*", "read": ".*"})
    app = Celery("plain", broker=amqp_url(vhost))
    with app.connection_for_write() as connection:
        for queue in app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()
    publish(vhost, "celery", 3)
    return seed(vhost)


def migration_cut(vhost: str) -> str:
    """The seed with `example` made quorum, its migration killed after the messages were parked."""
    apply(seed(vhost))
    publish(vhost, "example", 5)

    def crash_before_delete(step: object) -> None:
        if type(step).__name__ == "Swap":  # the step that deletes the old queue (and declares the new one)
            raise Crash(step)

    with pytest.raises(Crash):
        run_migration(
            Queue(
                vhost,
                "example",
                "quorum",
                arguments={"x-dead-letter-exchange": "example.dead", "x-dead-letter-routing-key": "com.example.dead"},
            ),
            parameters(vhost),
            Management(endpoints()),
            before_step=crash_before_delete,
        )
    return seed(vhost).replace("  example:\n    bindings:", "  example:\n    type: quorum\n    bindings:")


def policy_by_hand(vhost: str) -> str:
    """The seed, applied, then someone capped a managed queue with a policy of their own."""
    apply(seed(vhost))
    definition = {"pattern": "^example$", "definition": {"max-length": 1000}, "apply-to": "queues", "priority": 5}
    api("PUT", f"policies/{quote(vhost, safe='')}/by-hand", json=definition).raise_for_status()
    return seed(vhost)


SETUPS: dict[str, Callable[[str], str]] = {
    "seed": seed_applied,
    "shop": shop_applied,
    "celery-declared": celery_declared,
    "migration-cut": migration_cut,
    "policy-by-hand": policy_by_hand,
}
NAME = "fixture-{case}"  # the vhost name the recorded files hold


def live_answers(vhost: str) -> dict[str, Any]:
    """What the management API says of the vhost; messages and consumers counted by passive declare."""
    path = quote(vhost, safe="")
    # As provisioner reads them: RabbitMQ 4.3's definitions leave out internal exchanges, read besides.
    definitions = Management(endpoints()).definitions(vhost) or {}
    for exchange in definitions.get("exchanges", []):  # 4.3 writes no "internal" where it is false
        exchange.setdefault("internal", False)
    for kind in ("exchanges", "queues", "bindings", "policies"):
        definitions[kind] = sorted(definitions.get(kind, []), key=lambda item: json.dumps(item, sort_keys=True))
    types = {row["name"]: row.get("type", "classic") for row in api("GET", f"queues/{path}").json()}
    connection = pika.BlockingConnection(parameters(vhost))
    rows = []
    for queue in definitions["queues"]:
        ok = connection.channel().queue_declare(queue["name"], passive=True)
        row = {"name": queue["name"], "type": types[queue["name"]], "exclusive": False}
        rows.append({**row, "messages": ok.method.message_count, "consumers": ok.method.consumer_count})
    connection.close()
    operator_policies = api("GET", f"operator-policies/{path}").json()
    return {"definitions": definitions, "operator_policies": operator_policies, "queues": rows}


def renamed(value: Any, old: str, new: str) -> Any:
    """The recorded answers with the test's random vhost name written as the case's fixed one."""
    return json.loads(json.dumps(value).replace(json.dumps(old)[1:-1], new))


VERSION_NOTE = re.compile(r"; stored with x-queue-type=classic \(RabbitMQ [0-9.]+\)")


@pytest.mark.parametrize("case", sorted(SETUPS))
def test_a_case_set_up_again_reads_as_recorded(case: str, vhost_name: str) -> None:
    folder, name = FOLDER / case, NAME.format(case=case)
    text = SETUPS[case](vhost_name)
    answers = renamed(live_answers(vhost_name), vhost_name, name)
    desired = provisioner.parse_topology(text.replace(vhost_name, name))
    if RECORD:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "topology.yaml").write_text(text.replace(vhost_name, name))
        (folder / "live.json").write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
        plan = plan_for(folder)
        (folder / "plan.txt").write_text(plan_text(plan))
        (folder / "plan.json").write_text(plan_json(plan))
    stored = recorded(folder)
    assert (folder / "topology.yaml").read_text() == text.replace(vhost_name, name)
    # Compared as the diff sees them (normalised), so a broker that words its answers differently
    # (RabbitMQ 4 adds x-queue-type to classic queues) still matches; counts included.
    fresh = live_from_definitions(name, answers["definitions"], {r["name"]: r for r in answers["queues"]}, desired)
    kept = live_from_definitions(name, stored["definitions"], {r["name"]: r for r in stored["queues"]}, desired)
    assert (fresh.topology, fresh.stats) == (kept.topology, kept.stats)
    # RabbitMQ 4.x plans note that it stores x-queue-type on the classic queues they create; 3.10 recordings lack it.
    fresh_text = VERSION_NOTE.sub("", plan_text(plan_of(desired, answers, prune=False)))
    assert fresh_text == (folder / "plan.txt").read_text()
