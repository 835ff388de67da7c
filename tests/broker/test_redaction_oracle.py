"""Masking never hides ordinary names: connected with short and common passwords (x, a, guest, orders, /, 1),
plan, plan --json, apply, drift, export and error lines name every exchange, queue and word as they are, and the
password still never appears where a password stands (a URL's userinfo). On a node of this module's own: the
shared broker's users are cluster-wide state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
from nodes import ThrowawayNode
from provision_cli import run as run_provision

from provisioner.redact import MASK, secret_forms

PASSWORDS = ["x", "a", "guest", "orders", "/", "1"]
TOPOLOGY = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
  exist: {{type: fanout}}
queues:
  orders:
    bindings: [{{exchange: orders, routing_key: "x.a.1.guest"}}]
  guest: {{}}
  a: {{bindings: [{{exchange: exist}}]}}
policies:
  orders: {{pattern: "^orders$", definition: {{max-length: 1000}}}}
"""
NAMES = ["+ exchange orders", "+ exchange exist", "+ queue orders", "+ queue guest", "+ queue a", "+ policy orders"]


@pytest.fixture(scope="module")
def node(broker: None) -> Iterator[ThrowawayNode]:
    started = ThrowawayNode()
    try:
        started.start()
        yield started
    finally:
        started.destroy()


def admin(node: ThrowawayNode, method: str, path: str, **kwargs: object) -> None:
    url = f"http://127.0.0.1:{node.config.management_port}/api/{path}"
    requests.request(method, url, auth=("guest", "guest"), timeout=30, **kwargs).raise_for_status()  # type: ignore[arg-type]


def in_a_url(password: str, text: str) -> list[str]:
    """Forms of the password standing where a password stands: between ``user:`` and ``@``."""
    return sorted(form for form in secret_forms(password) if f"keeper:{form}@" in text)


def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = run_provision(*args, env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("password", PASSWORDS)
def test_short_passwords_mask_no_name_and_never_show(node: ThrowawayNode, password: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    vhost = f"orders-{PASSWORDS.index(password)}"
    user = f"keeper{PASSWORDS.index(password)}"
    admin(node, "PUT", f"users/{user}", json={"password": password, "tags": "administrator"})
    admin(node, "PUT", f"vhosts/{vhost}")
    admin(node, "PUT", f"permissions/{vhost}/{user}", json={"configure": ".*", "write": ".*", "read": ".*"})
    written = quote(password, safe="")
    env = {
        "PROVISION_AMQP_URL": f"amqp://{user}:{written}@127.0.0.1:{node.config.amqp_port}/",
        "PROVISION_MANAGEMENT_URL": f"http://{user}:{written}@127.0.0.1:{node.config.management_port}",
    }
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY.format(vhost=vhost))
    outputs = {}
    code, outputs["plan"] = run(["plan", str(topology)], env)
    assert code == 0 and all(name in outputs["plan"] for name in NAMES), outputs["plan"]
    code, outputs["json"] = run(["plan", "--json", str(topology)], env)
    names = {change["name"] for change in json.loads(outputs["json"])["changes"]}
    assert code == 0 and {"orders", "exist", "guest", "a"} <= names, names
    code, outputs["apply"] = run(["apply", str(topology)], env)
    assert code == 0 and all(name in outputs["apply"] for name in NAMES), outputs["apply"]
    code, outputs["drift"] = run(["drift", str(topology)], env)
    assert code == 0 and outputs["drift"].startswith("no drift"), outputs["drift"]
    code, outputs["export"] = run(["export", "--vhost", vhost], env)
    assert code == 0 and "  orders:" in outputs["export"] and "  exist:" in outputs["export"], outputs["export"]
    broken = {**env, "PROVISION_MANAGEMENT_URL": f"http://{user}:{written}@127.0.0.1:1"}
    code, outputs["error"] = run(["plan", "--retry-seconds", "0", str(topology)], broken)
    assert code == 1 and "127.0.0.1:1" in outputs["error"], outputs["error"]
    for command, text in outputs.items():
        assert MASK not in text, (command, text)  # nothing to mask: no name is ever taken for the password
        assert in_a_url(password, text) == [], (command, text)
