"""Upgrade readiness: what RabbitMQ 4.x removes or denies, in the topology (validate) and on the live broker (plan).

The validate tests are pure. The plan test makes, by hand, what a 3.x team may
have on its broker and reads the warnings; the broker tests show that what we
warn about is really refused by the broker under test where that is so
(RabbitMQ 4.x, and 4.x with deprecated features denied).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from click.testing import CliRunner
from rabbit import (
    api,
    fresh_vhost,
    parameters,
    refuses_queue_master_locator,
    refuses_queue_version_1,
    refuses_transient_queues,
    stored_arguments,
    version,
)

from provisioner.cli import main
from provisioner.diff import differences
from provisioner.live_state import live_from_definitions
from provisioner.output import plan_lines
from provisioner.topology import load, readiness
from provisioner.topology.model import Policy, Queue, Topology

RULE_CASES = {
    "mirroring": (
        "policies:\n  mirror: {pattern: '^m', definition: {ha-mode: all, ha-sync-mode: automatic}}\n",
        ["5:49: warning: ha-mode: classic queue mirroring is removed", "5:68: warning: ha-sync-mode: classic"],
    ),
    "queue mode argument": (
        "  lazy: {arguments: {x-queue-mode: lazy}}\n",
        ["4:36: warning: x-queue-mode lazy: lazy mode has no effect since RabbitMQ 3.12"],
    ),
    "queue mode field": ("  lazy: {queue_mode: lazy}\n", ["4:22: warning: x-queue-mode lazy: lazy mode"]),
    "queue mode policy": (
        "  lazy: {policy: {queue-mode: lazy}}\n",
        ["4:31: warning: queue-mode: lazy mode has no effect"],
    ),
    "queue version 1": (
        "  old: {arguments: {x-queue-version: 1}}\n",
        ["4:38: warning: x-queue-version 1: classic queue storage v1 is removed in RabbitMQ 4.3"],
    ),
    "queue version 1 policy": (
        "policies:\n  v1: {pattern: '^v', definition: {queue-version: 1}}\n",
        ["5:51: warning: queue-version: classic queue storage v1 is removed"],
    ),
    "master locator": (
        "  loc: {arguments: {x-queue-master-locator: min-masters}}\n",
        ["4:45: warning: x-queue-master-locator min-masters: a deprecated feature (queue_master_locator)"],
    ),
    "master locator policy": (
        "policies:\n  loc: {pattern: '^l', definition: {queue-master-locator: random}}\n",
        ["5:59: warning: queue-master-locator: a deprecated feature (queue_master_locator)"],
    ),
    "classic consumer timeout": (
        "  slow: {arguments: {x-consumer-timeout: 60000}}\n",
        ["4:42: warning: x-consumer-timeout 60000: consumer timeouts no longer apply to classic queues"],
    ),
    "classic consumer timeout policy": (
        "policies:\n  slow: {pattern: '^s', definition: {consumer-timeout: 60000}}\n",
        ["5:56: warning: consumer-timeout: consumer timeouts no longer apply to classic queues"],
    ),
    "transient queue": ("  tmp: {durable: false}\n", ["4:18: warning: a non-durable queue: RabbitMQ 4.x refuses it"]),
    "quorum drops": (
        "  qq: {type: quorum}\n",
        ["4:3: warning: quorum queue without delivery_limit and without dead-lettering"],
    ),
}


def _topology(tmp_path: Path, body: str) -> Path:
    """A topology with a queue `work` and ``body`` (queue lines go under queues:, a policies: block after)."""
    queues, _, policies = body.partition("policies:\n")
    text = "version: 1\nqueues:\n  work: {}\n" + queues + (f"policies:\n{policies}" if policies else "")
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_each_rule_warns_at_its_line_and_strict_refuses(tmp_path: Path, case: str) -> None:
    body, expected = RULE_CASES[case]
    path = _topology(tmp_path, body)
    relaxed = CliRunner().invoke(main, ["validate", str(path)])
    assert relaxed.exit_code == 0, relaxed.output
    warnings = [line for line in relaxed.output.splitlines() if ": warning: " in line]
    assert len(warnings) == len(expected), relaxed.output
    for line, start in zip(sorted(warnings), sorted(expected), strict=True):
        assert line.startswith(f"{path}:{start}") and line.endswith(")"), line
    strict = CliRunner().invoke(main, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1
    assert strict.output.splitlines()[-1] == f"{len(expected)} problem(s) found"


def test_a_delivery_limit_on_a_queue_celery_consumes_warns_about_4_3s_requeues(tmp_path: Path) -> None:
    """RabbitMQ 4.3 counts failed deliveries only: the limit of a Celery queue no longer bounds requeues."""
    text = (
        "version: 1\nqueues:\n  work: {type: quorum, delivery_limit: 5}\n  other: {type: quorum, delivery_limit: 5}\n"
        "  by_policy: {type: quorum}\n"
        "policies:\n  dl: {pattern: '^by_', definition: {delivery-limit: 3}}\n"
        "tasks:\n  app.*: {queue: work}\n  app.by_policy: {queue: by_policy}\n"
    )
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    warnings = [line for line in result.output.splitlines() if ": warning: " in line]
    assert [line.split(": warning: ")[0] for line in warnings] == [f"{path}:3:40", f"{path}:5:3"], result.output
    assert all("from RabbitMQ 4.3 the limit counts failed deliveries only" in line for line in warnings)


def test_what_4x_keeps_raises_no_warning(tmp_path: Path) -> None:
    """Version 2, a leader locator, a limit or a dead letter: nothing to warn about."""
    body = (
        "  v2: {arguments: {x-queue-version: 2, x-queue-leader-locator: balanced}}\n"
        "  limited: {type: quorum, delivery_limit: 5}\n"
        "  parked: {type: quorum, dead_letter: true}\n"
        "  by_policy: {type: quorum}\n"
        "policies:\n  dl: {pattern: '^by_', definition: {delivery-limit: 3}}\n"
    )
    result = CliRunner().invoke(main, ["validate", "--strict", str(_topology(tmp_path, body))])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_a_hand_made_dead_letter_queue_is_not_asked_for_a_delivery_limit(tmp_path: Path) -> None:
    """A quorum queue that receives dead letters parks them; redelivery limits are for work queues."""
    text = (
        "version: 1\nexchanges: {dlx: {type: direct}}\nqueues:\n"
        "  work: {type: quorum, delivery_limit: 5, arguments: {x-dead-letter-exchange: dlx}}\n"
        "  parking: {type: quorum, bindings: [{exchange: dlx}]}\n"
    )
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    warnings: list[object] = []
    load([path], environ={}, warnings=warnings)
    assert warnings == []
    without_dlx = text.replace(", arguments: {x-dead-letter-exchange: dlx}", "")
    path.write_text(without_dlx)
    load([path], environ={}, warnings=warnings)
    assert [str(w).split(": warning: ")[0] for w in warnings] == [f"{path}:5:3"]


def test_live_lines_name_the_object_the_setting_and_why() -> None:
    """The same rules over live objects: operator policies too, and 'x-queue-version' as the broker stores it."""
    live = Topology(
        queues=(Queue("v", "old", arguments={"x-queue-version": "1"}), Queue("v", "tmp", durable=False)),
        policies=(Policy("v", "mirror", "^m", {"ha-mode": "exactly", "ha-params": 2}),),
    )
    lines = [readiness.live_line(finding) for finding in readiness.findings(live)]
    assert lines == [
        "live policy 'mirror' in vhost 'v' uses ha-mode exactly: " + readiness.RULES[0].why,
        "live policy 'mirror' in vhost 'v' uses ha-params 2: " + readiness.RULES[0].why,
        "live queue 'old' in vhost 'v' uses x-queue-version 1: " + readiness.RULES[2].why,
        "live queue 'tmp' in vhost 'v': " + readiness.TRANSIENT_WHY,
    ]


def _declare(vhost: str, name: str, durable: bool = True, arguments: dict[str, object] | None = None) -> str:
    """Declare a queue; '' when the broker took it, else the broker's reply text."""
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        connection.channel().queue_declare(name, durable=durable, arguments=arguments)
        return ""
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as refused:
        return str(refused.reply_text)
    finally:
        if connection.is_open:
            connection.close()


def _policy(vhost: str, name: str, definition: dict[str, object]) -> int:
    body = {"pattern": f"^{name}$", "definition": definition, "apply-to": "queues"}
    return api("PUT", f"policies/{quote(vhost, safe='')}/{name}", json=body).status_code


@pytest.mark.broker
def test_plan_warns_about_live_mirroring_and_lazy_queues(tmp_path: Path) -> None:
    """A 3.x broker a team wants to upgrade: plan names each live object 4.x would refuse or ignore."""
    with fresh_vhost("readiness") as vhost:
        mirrored = _policy(vhost, "mirror", {"ha-mode": "all"})
        assert _declare(vhost, "lazy", arguments={"x-queue-mode": "lazy"}) == ""
        path = tmp_path / "topology.yaml"
        path.write_text(f"version: 1\nvhost: {vhost}\nqueues: {{work: {{}}}}\n")
        result = CliRunner().invoke(main, ["plan", str(path)])
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.output.splitlines() if line.startswith("warning: live ")]
        lazy = f"warning: live queue 'lazy' in vhost '{vhost}' uses x-queue-mode lazy: " + readiness.RULES[1].why
        at = api("GET", "overview").json()["rabbitmq_version"]
        if version() >= (3, 12):  # what this broker does with it, said at the end
            lazy += f" (RabbitMQ {at} ignores x-queue-mode lazy)"
        if version() >= (4, 0):  # the broker refuses the policy outright
            assert mirrored == 400
            assert warnings == [lazy]
        else:
            assert mirrored in (201, 204)
            mirror = f"warning: live policy 'mirror' in vhost '{vhost}' uses ha-mode all: " + readiness.RULES[0].why
            assert warnings == [mirror, lazy]
        as_json = CliRunner().invoke(main, ["plan", "--json", str(path)])
        assert json.loads(as_json.stdout)["upgrade_warnings"] == [line.removeprefix("warning: ") for line in warnings]


@pytest.mark.broker
def test_the_broker_refuses_what_we_warn_about_where_it_does() -> None:
    """Against the broker under test: 4.x refuses mirroring; 4.3 and deprecated features denied, more.

    tests/broker/test_readiness_broker.py holds one case per rule; this is the whole story on one vhost.
    """
    four = version() >= (4, 0)
    with fresh_vhost("readiness") as vhost:
        assert (_policy(vhost, "mirror", {"ha-mode": "all"}) == 400) is four
        locator_policy = _policy(vhost, "locator", {"queue-master-locator": "random"})
        assert (locator_policy == 400) is refuses_queue_master_locator(), locator_policy
        refused = _declare(vhost, "locator", arguments={"x-queue-master-locator": "min-masters"})
        assert ("queue_master_locator" in refused) is refuses_queue_master_locator(), refused
        refused = _declare(vhost, "transient", durable=False)
        assert ("transient_nonexcl_queues" in refused) is refuses_transient_queues(), refused
        # Accepted (stored, without effect) even on 4.3.6.
        assert _declare(vhost, "lazy", arguments={"x-queue-mode": "lazy"}) == ""
        refused = _declare(vhost, "v1", arguments={"x-queue-version": 1})
        assert ("unsupported queue version" in refused) is refuses_queue_version_1(), refused


# --- What 4.x stores: plan says it ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ("4.0.5", "+ queue work  (classic; stored with x-queue-type=classic (RabbitMQ 4.0.5))"),
        ("3.10.8", "+ queue work  (classic)"),
    ],
)
def test_plan_says_a_classic_queue_is_stored_with_its_type_on_4x(tmp_path: Path, broker: str, expected: str) -> None:
    """Recorded definitions of each version: 4.x adds x-queue-type to every classic queue, 3.x does not."""
    path = _topology(tmp_path, "")
    desired = load([path], environ={})
    live = live_from_definitions("/", {"rabbit_version": broker, "queues": [], "exchanges": [], "bindings": []})
    text = [line.strip() for line, _ in plan_lines(differences(desired, {"/": live}))]
    assert expected in text


@pytest.mark.broker
def test_the_broker_under_test_stores_what_plan_says(tmp_path: Path) -> None:
    """On 4.x plan notes the type the broker stores on every classic queue, even one declared without it."""
    with fresh_vhost("readiness") as vhost:
        path = tmp_path / "topology.yaml"
        path.write_text(f"version: 1\nvhost: {vhost}\nqueues: {{work: {{}}}}\n")
        planned = CliRunner().invoke(main, ["plan", str(path)])
        assert planned.exit_code == 0, planned.output
        assert _declare(vhost, "untyped") == ""  # as a client that names no type declares it
        stored = api("GET", f"queues/{quote(vhost, safe='')}/untyped").json()["arguments"]
        assert stored == stored_arguments({})
        assert (
            ("stored with x-queue-type=classic" in planned.output)
            is (version() >= (4, 0))
            is ("x-queue-type" in stored)
        )


# --- What one version does with a finding (pure; tests/broker/test_readiness_broker.py checks it on the broker) ---


def test_a_verdict_names_the_version_and_what_it_does() -> None:
    from provisioner.topology.verdicts import denied_features, verdict

    old = Topology(queues=(Queue("v", "old", arguments={"x-queue-version": 1}), Queue("v", "tmp", durable=False)))
    v1, transient = readiness.findings(old)
    assert verdict(v1, "4.3.6").text == "RabbitMQ 4.3.6 refuses x-queue-version 1"  # type: ignore[union-attr]
    assert verdict(v1, "4.0.5").effect == "takes"  # type: ignore[union-attr]
    assert verdict(v1, "") is None
    rows_4_0 = [{"name": "transient_nonexcl_queues", "deprecation_phase": "permitted_by_default"}]
    rows_4_3 = [{"name": "transient_nonexcl_queues", "deprecation_phase": "permitted_by_default", "state": "denied"}]
    assert verdict(transient, "4.0.5", denied_features(rows_4_0)).effect == "may-refuse"  # type: ignore[union-attr]
    assert verdict(transient, "4.3.6", denied_features(rows_4_3)).refused  # type: ignore[union-attr]
    permitted = [{**rows_4_3[0], "state": "permitted"}]
    assert verdict(transient, "4.3.6", denied_features(permitted)).effect == "takes"  # type: ignore[union-attr]
    locator = [{"name": "queue_master_locator", "deprecation_phase": "denied_by_default"}]
    assert denied_features(locator) == {"queue_master_locator": True}


@pytest.mark.parametrize(
    ("runtime", "warned"), [("runtime: provisioner", False), ("runtime: celery", True), ("vhost: /", True)]
)
def test_the_requeue_warning_knows_whether_the_workers_run_provisioners_runtime(
    tmp_path: Path, runtime: str, warned: bool
) -> None:
    """Workers that call provisioner.celery.install(app) requeue a task once at most: the 4.3 count does not matter.

    Plain Celery (said, or the section silent about it) still gets the warning, and --strict still fails on it.
    """
    path = tmp_path / "topology.yaml"
    path.write_text(
        "version: 1\nqueues:\n  work: {type: quorum, delivery_limit: 5}\ntasks:\n  app.*: {queue: work}\n"
        f"celery:\n  default_queue: work\n  {runtime}\n"
    )
    result = CliRunner().invoke(main, ["validate", "--strict", str(path)])
    assert (result.exit_code == 1) is warned, result.output
    assert ("from RabbitMQ 4.3 the limit counts failed deliveries only" in result.output) is warned, result.output
    if warned:
        assert "celery: {runtime: provisioner}" in result.output  # the line says how to tell us


def test_an_unknown_runtime_is_one_line_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text("version: 1\nqueues:\n  work: {}\ncelery:\n  runtime: kombu\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code != 0
    problems = [line for line in result.output.splitlines() if line.startswith(f"{path}:")]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:5:12: ") and "celery.runtime" in problems[0], (
        result.output
    )
