"""A converged apply or drift proves both doors: a wrong AMQP password fails even when nothing would change."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pika
from click.testing import CliRunner
from rabbit import AMQP_PORT, AUTH, HOST, MANAGEMENT_URL, api, parameters

from provisioner.cli import main

TOPOLOGY = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
queues:
  orders: {{bindings: [{{exchange: orders, routing_key: "order.#"}}]}}
"""


def broker_options(amqp_password: str = AUTH[1], management_password: str = AUTH[1]) -> list[str]:
    management = MANAGEMENT_URL.replace("://", f"://{AUTH[0]}:{quote(management_password, safe='')}@", 1)
    amqp = f"amqp://{AUTH[0]}:{quote(amqp_password, safe='')}@{HOST}:{AMQP_PORT}/"
    return ["--amqp-url", amqp, "--management-url", management, "--retry-seconds", "0"]


def test_a_converged_apply_and_drift_refuse_a_wrong_amqp_password(vhost_name: str, tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY.format(vhost=vhost_name))
    runner = CliRunner()
    applied = runner.invoke(main, ["apply", *broker_options(), str(topology)])
    assert applied.exit_code == 0 and "Applied: 4 created" in applied.output, applied.output
    for command in ("apply", "drift"):
        converged = runner.invoke(main, [command, *broker_options(), str(topology)])
        assert converged.exit_code == 0, converged.output  # the right password: nothing to do, exit 0
        wrong = "not-" + AUTH[1] + "-at-all"
        result = runner.invoke(main, [command, *broker_options(amqp_password=wrong), str(topology)])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, (command, result.output)
        assert lines[0].startswith("error: ") and "AMQP" in lines[0] and "nothing was changed" in lines[0]
        assert wrong not in result.output and "internal error" not in result.output
    # the wrong password changed nothing: the queue and binding are as applied
    connection = pika.BlockingConnection(parameters(vhost_name))
    try:
        assert connection.channel().queue_declare("orders", passive=True).method.message_count == 0
    finally:
        connection.close()
    bindings = api("GET", f"queues/{quote(vhost_name, safe='')}/orders/bindings").json()
    assert {binding["routing_key"] for binding in bindings} == {"orders", "order.#"}


def test_a_drift_of_a_missing_vhost_still_checks_the_amqp_password(vhost_name: str, tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY.format(vhost=vhost_name))
    result = CliRunner().invoke(main, ["drift", *broker_options(amqp_password="wrong"), str(topology)])
    assert result.exit_code == 1 and "AMQP" in result.output, result.output
    right = CliRunner().invoke(main, ["drift", *broker_options(), str(topology)])
    assert right.exit_code == 2 and "DRIFT" in right.output, right.output  # the vhost is missing: drift, no error
