"""Settings an older RabbitMQ does not know: the table in topology/introduced.py against the leg's broker.

Each setting is declared on the broker as it is (refused exactly where the table says),
then planned and applied through provision: where the broker is too old the plan names
it and apply writes nothing, not even the vhost; where it is new enough it applies.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
import rabbit
from click.testing import CliRunner
from rabbit import api, fresh_vhost, parameters, version

from provisioner.cli import main
from provisioner.topology.introduced import INTRODUCED, Introduced

pytestmark = pytest.mark.broker


def refused_by_broker(vhost: str, entry: Introduced) -> bool:
    """Declare the setting on the broker directly: whether it refuses it."""
    if entry.place == "argument":
        connection = pika.BlockingConnection(parameters(vhost))
        arguments = {"x-queue-type": entry.queue_type, entry.setting: "balanced"}
        try:
            connection.channel().queue_declare(f"q-{uuid.uuid4().hex[:6]}", durable=True, arguments=arguments)
            return False
        except pika.exceptions.ChannelClosedByBroker as error:
            assert error.reply_code == 406, error
            return True
        finally:
            if connection.is_open:
                connection.close()
    key, _, apply_to = entry.setting.partition(" ")
    body = {"pattern": "^none$", "apply-to": apply_to or "queues", "definition": {"max-length": 1}}
    if not apply_to:
        body["definition"] = {key: SAMPLES[key]}
    collection = "policies" if entry.place == "policy" else "operator-policies"
    answer = api("PUT", f"{collection}/{quote(vhost, safe='')}/probe", json=body)
    assert answer.status_code in (201, 204, 400), answer.text
    return answer.status_code == 400


SAMPLES = {
    "overflow": "reject-publish",
    "queue-version": 2,
    "target-group-size": 3,
    "queue-master-locator": "random",
    "consumer-timeout": 60000,
    "stream-filter-size-bytes": 32,
}


def topology(vhost: str, entry: Introduced) -> str:
    if entry.place == "argument":
        body = f"queues:\n  q: {{type: {entry.queue_type}, arguments: {{{entry.setting}: balanced}}}}\n"
    else:
        key, _, apply_to = entry.setting.partition(" ")
        definition = "{max-length: 1}" if apply_to else f"{{{key}: {SAMPLES[key]}}}"
        section = "policies" if entry.place == "policy" else "operator_policies"
        body = f"{section}:\n  cap: {{pattern: '^q$', apply_to: {apply_to or 'queues'}, definition: {definition}}}\n"
    return f"version: 1\nvhost: {vhost}\n{body}"


@pytest.mark.parametrize("entry", INTRODUCED, ids=lambda entry: f"{entry.place}-{entry.setting}")
def test_a_setting_newer_than_the_broker_is_refused_by_the_plan_before_anything_is_written(
    entry: Introduced, tmp_path: Path
) -> None:
    too_old = version() < entry.since
    # 4.x refuses the master locator where deprecated features are denied: readiness, not age, says so
    deprecated = entry.setting == "queue-master-locator" and rabbit.refuses_queue_master_locator()
    with fresh_vhost("introduced") as vhost:
        assert refused_by_broker(vhost, entry) is (too_old or deprecated)
    name = f"test-new-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "topology.yaml"
    path.write_text(topology(name, entry))
    try:
        result = CliRunner().invoke(main, ["apply", str(path)])
        if too_old or deprecated:
            assert result.exit_code != 0 and "nothing was changed" in result.output, result.output
            assert api("GET", f"vhosts/{name}").status_code == 404
        if too_old:
            [line] = [line for line in result.output.splitlines() if "which came with RabbitMQ" in line]
            assert entry.setting.split(" ")[-1] in line and "nothing was changed" in line, result.output
        elif not deprecated:
            assert result.exit_code == 0, result.output
    finally:
        api("DELETE", f"vhosts/{name}")
