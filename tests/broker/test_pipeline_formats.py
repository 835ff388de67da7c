"""`plan --format markdown` and `validate`/`drift --format github` against files recorded from real runs.

The recorded files (tests/fixtures/pipeline) are what these commands printed against
the real broker, with the test's random vhost and folder replaced by placeholders.
PROVISION_RECORD=1 writes them again from a run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

import pika
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from provision_cli import run as run_provision
from rabbit import AMQP_PORT, AUTH, HOST, MANAGEMENT_URL, api, parameters

from provisioner.cli import main
from provisioner.formats.github import annotation
from provisioner.formats.markdown import code, plan_markdown
from provisioner.plan import Action, Change, Drift, Hit, Plan
from provisioner.topology.accounts import Permission, User
from provisioner.topology.locate import Location
from provisioner.topology.model import Policy

RECORDED = Path(__file__).parent.parent / "fixtures" / "pipeline"
BROKER = [
    "--amqp-url",
    f"amqp://{AUTH[0]}:{AUTH[1]}@{HOST}:{AMQP_PORT}/",
    "--management-url",
    MANAGEMENT_URL.replace("://", f"://{AUTH[0]}:{AUTH[1]}@", 1),
]
HOSTILE = "evil `|` <details>@org/team **x**"

BEFORE = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
queues:
  orders: {{bindings: [{{exchange: orders, routing_key: "order.#"}}]}}
  old: {{}}
  "{hostile}": {{bindings: [{{exchange: orders, routing_key: "a|b"}}]}}
"""

AFTER = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
  audit: {{type: fanout}}
queues:
  orders:
    type: quorum
    bindings: [{{exchange: orders, routing_key: "order.#"}}]
users:
  pipeline-golden-operator: {{password: "${{GOLDEN_PASSWORD}}", tags: [administrator, management]}}
permissions:
  pipeline-golden-operator: {{configure: ".*", write: ".*", read: ".*"}}
  {guest}: {{configure: ".*", write: ".*", read: ".*"}}
"""


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """``provision COMMAND`` with the broker's URLs given as options."""
    return run_provision(args[0], *BROKER, *args[1:], env=env)


def recorded(name: str, text: str, replacements: dict[str, str]) -> None:
    """Compare with the recorded file (placeholders for what differs per run); PROVISION_RECORD=1 records."""
    for value, placeholder in replacements.items():
        text = text.replace(value, placeholder)
    path = RECORDED / name
    if os.environ.get("PROVISION_RECORD") == "1":
        path.write_text(text)
    assert text == path.read_text()


def publish(vhost: str, routing_key: str, count: int) -> None:
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    for number in range(count):
        channel.basic_publish("orders", routing_key, str(number).encode())
    connection.close()


def test_markdown_plan_and_github_drift_as_recorded(vhost_name: str, tmp_path: Path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(BEFORE.format(vhost=vhost_name, hostile=HOSTILE))
    assert run("apply", str(topology)).exit_code == 0
    publish(vhost_name, "order.created", 3)
    old = pika.BlockingConnection(parameters(vhost_name))
    old.channel().basic_publish("", "old", b"kept?")
    old.close()
    places = {vhost_name: "VHOST", str(tmp_path): "TMP"}
    # by hand: a binding removed and a policy that caps a managed queue
    api("DELETE", f"bindings/{quote(vhost_name, safe='')}/e/orders/q/orders/order.%23").raise_for_status()
    policy = {"pattern": "^orders$", "definition": {"max-length": 7}, "apply-to": "queues"}
    api("PUT", f"policies/{quote(vhost_name, safe='')}/by-hand", json=policy).raise_for_status()
    drift = run("drift", "--format", "github", str(topology))
    assert drift.exit_code == 2, drift.output
    annotations = [line for line in drift.output.splitlines() if line.startswith("::")]
    assert all(line.startswith(f"::error file={topology},line=") for line in annotations), annotations
    recorded("drift-github.txt", "\n".join(annotations) + "\n", places)
    api("DELETE", f"policies/{quote(vhost_name, safe='')}/by-hand").raise_for_status()
    topology.write_text(AFTER.format(vhost=vhost_name, hostile=HOSTILE, guest=AUTH[0]))
    plan = run("plan", "--prune", "--format", "markdown", str(topology), env={"GOLDEN_PASSWORD": "s3cret-golden"})
    assert plan.exit_code == 0, plan.output
    assert "s3cret-golden" not in plan.output
    on_any_version = "".join(  # 4.x adds a line on its default delivery limit of 20; the recording is 3.10's
        line for line in plan.output.splitlines(keepends=True) if "the broker's default on 4.x" not in line
    )
    recorded("plan.md", on_any_version, places)
    assert "**-/+ replaced** queue `orders` in `VHOST`: **3 message(s)**" in plan.output.replace(vhost_name, "VHOST")
    assert "**- deleted** queue `old` in `VHOST`: **1 message(s)**" in plan.output.replace(vhost_name, "VHOST")
    assert "- user `pipeline-golden-operator` gains the tag `administrator`" in plan.output
    assert "deleted** queue ``evil `|` <details>@org/team **x**`` in" in plan.output  # hostile, inert
    assert [line for line in plan.output.splitlines() if "details>" in line and "`" not in line] == [
        "<details><summary>The whole plan (8 change(s))</summary>",
        "</details>",
    ]  # the name's <details> stays inside code spans and the fenced block


def test_validate_github_annotations_as_recorded(tmp_path: Path) -> None:
    forged, bad = tmp_path / "forged.yaml", tmp_path / "bad.yaml"
    forged.write_text('version: 1\nqueues:\n  "q%\\r\\n::error::forged": {}\n')  # refused for its characters
    bad.write_text(
        "version: 1\nqueues:\n  q:\n    type: quorum\n    max_priority: 5\n"
        "  other:\n    bindings: [{exchange: 'no,such:exchange'}]\n"
    )
    good = Path(__file__).resolve().parent.parent.parent / "topologies" / "shop.yaml"
    result = CliRunner().invoke(main, ["validate", "--format", "github", str(forged), str(bad), str(good)])
    assert result.exit_code == 1
    recorded("validate-github.txt", result.output, {str(tmp_path): "TMP", str(good.parent): "TOPOLOGIES"})
    lines = result.output.splitlines()
    assert (
        sum(line.startswith("::error ") for line in lines) == 3
        and sum(line.startswith(f"::warning file={bad},") for line in lines) == 1
    )
    assert not any(line.startswith("::error::") for line in lines)  # the name's forged command stays inside a message


def test_a_permission_widened_to_everything_and_a_vhost_gained_are_called_out() -> None:
    before = Permission("shop", "app", "^app\\.", "^app\\.", "^app\\.")
    after = Permission("shop", "app", ".*", "^app\\.", ".*")
    plan = Plan(
        changes=(
            Change(Action.UPDATE, before, after, "configure, read"),
            Change(Action.CREATE, None, Permission("billing", "app", "^x$", "^x$", "^x$")),
            Change(Action.UPDATE, User("ops", ("management",)), User("ops", ("management", "policymaker"))),
        )
    )
    text = plan_markdown(plan)
    assert "- user `app` gains configure, read `.*` (every name) in vhost `shop`" in text
    assert "write" not in text.split("Privilege changes")[1].split("<details>")[0]  # write stays narrow
    assert "- user `app` gains access in vhost `billing`" in text
    assert "- user `ops` gains the tag `policymaker`" in text
    assert "3 privilege change(s)" in text
    policy = Policy("shop", "by-hand`x", "^orders$", {"max-length": 7})
    drifted = plan_markdown(Plan(drift=(Drift(policy, (Hit("queue", "orders", (("max-length", None, 7),)),)),)))
    assert "(1 drift)" in drifted.splitlines()[0]
    assert "- policy ``by-hand`x`` in `shop` changes `queue orders: max-length: (none) -> 7`" in drifted


NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(name=NAMES)
def test_no_name_escapes_its_code_span(name: str) -> None:
    plan = Plan(changes=(Change(Action.DELETE, Permission(name, name, ".*", ".*", ".*"), None, "gone", messages=1),))
    text = plan_markdown(plan)
    outside = re.sub(r"(`+).*?\1", "", text.split("<details>")[0])  # every code span removed: our words remain
    for fragment in ("<", "@", "\n::", "](", "**x"):
        assert fragment not in outside.replace("<details><summary>", "") or fragment == "\n::"
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # the plan itself sits in a fenced block, shown as text
    prose = re.sub(r"(`+).*?\1", "", prose)  # and every name in a code span
    assert prose.count("<details>") == 1 and prose.count("</details>") == 1
    row = next(line for line in text.splitlines() if line.startswith("| `") or line.startswith("| ``"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 6, row  # five cells: the name's pipes are escaped
    assert code(name).count("\n") == 0


@settings(max_examples=200, deadline=None)
@given(message=st.text(), file=st.text(min_size=1))
def test_an_annotation_is_one_line_that_decodes_back(message: str, file: str) -> None:
    line = annotation("error", message, Location(file, 3, 4))
    assert "\n" not in line and "\r" not in line and line.startswith("::error file=")
    head, _, data = line[2:].partition("::")
    assert data.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%") == message
    assert "::" not in head  # the properties cannot end the command early
