"""Least privilege: a user with the 'management' tag and full permissions on its vhost plans and applies
(its vhost read kind by kind); writes it may not do are refused, naming the tag, before anything is written."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from rabbit import api
from test_broker_errors import PERMIT_ALL, UserMaker, make_user, one_error_line, run, urls  # noqa: F401

TOPOLOGY = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
queues:
  orders:
    bindings: [{{exchange: orders, routing_key: "order.#"}}]
    dead_letter: true
"""
POLICY = """
policies:
  cap: {pattern: "^orders$", definition: {max-length: 1000}}
"""


def write(tmp_path: Path, vhost: str, extra: str = "") -> str:
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(vhost=vhost) + extra)
    return str(path)


def exists(vhost: str, kind: str, name: str) -> bool:
    return api("GET", f"{kind}/{quote(vhost, safe='')}/{name}").status_code == 200


def test_a_management_user_plans_and_applies_its_vhost(tmp_path: Path, vhost_name: str, make_user: UserMaker) -> None:  # noqa: F811
    api("PUT", f"vhosts/{vhost_name}").raise_for_status()
    user = make_user(tags="management", permissions={vhost_name: PERMIT_ALL})
    path = write(tmp_path, vhost_name)
    code, output = run("plan", *urls(user), "--detailed-exitcode", path)
    assert code == 2 and "Plan: 6 to create" in output, output
    code, output = run("apply", *urls(user), path)
    assert code == 0 and "Applied: 6 created" in output, output
    code, output = run("plan", *urls(user), "--detailed-exitcode", path)
    assert code == 0 and "No changes" in output, output
    assert exists(vhost_name, "queues", "orders.dead")


def test_policies_need_the_policymaker_tag_and_say_so_before_any_write(
    tmp_path: Path,
    vhost_name: str,
    make_user: UserMaker,  # noqa: F811
) -> None:
    api("PUT", f"vhosts/{vhost_name}").raise_for_status()
    path = write(tmp_path, vhost_name, POLICY)
    user = make_user(tags="management", permissions={vhost_name: PERMIT_ALL})
    code, output = run("apply", *urls(user), path)
    line = one_error_line(output)
    assert code == 1 and f"user '{user}' of the management API (tags: management)" in line
    assert "policy changes: it needs the 'policymaker' or 'administrator' tag; nothing was changed" in line
    assert not exists(vhost_name, "exchanges", "orders")
    maker = make_user(tags="policymaker", permissions={vhost_name: PERMIT_ALL})
    code, output = run("apply", *urls(maker), path)
    assert code == 0 and "Applied: 7 created" in output, output
    code, output = run("plan", *urls(maker), "--detailed-exitcode", path)
    assert code == 0, output


def test_creating_a_vhost_needs_the_administrator_tag(tmp_path: Path, vhost_name: str, make_user: UserMaker) -> None:  # noqa: F811
    user = make_user(tags="policymaker")
    code, output = run("apply", *urls(user), write(tmp_path, vhost_name))
    line = one_error_line(output)
    assert code == 1 and "vhost changes: it needs the 'administrator' tag; nothing was changed" in line
    assert api("GET", f"vhosts/{vhost_name}").status_code == 404
