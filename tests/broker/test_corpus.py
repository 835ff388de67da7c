"""The corpus (tests/corpus/README.md): real-shaped definitions files and Celery apps, adopted end to end.

Definitions files: the broker's own import (POST /api/definitions/{vhost}) into one
fresh vhost, our export -> apply into another; both must hold the same objects,
except what the export named as left out. Files the broker refuses are refused
by export in one line naming the object. Celery apps: export, validate, apply,
plan, render and a real worker that runs every task (tests/adoption.py).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from adoption import adopt, cli, summary
from rabbit import api, fresh_vhost

from provisioner.export.emit import scalar

CORPUS = Path(__file__).parent.parent / "corpus"
DEFINITIONS = CORPUS / "definitions"
APPS = CORPUS / "apps"

# file -> the vhost of it that is adopted
IMPORTED = {
    "celery_production.json": "jobs",
    "dangling_bindings.json": "/",
    "client_testbed.json": "client_testbed",
    "duplicates.json": "/",
    "ignored_arguments.json": "/",
    "limits_and_operator_policies.json": "/",
    "operator_import.json": "hello",
    "per_vhost_body.json": "payments",
    "quorum_length.json": "/",
    "single_vhost_format.json": "vh3",
    "vhost_metadata.json": "tagged",
}
# file -> what export's one line names
REFUSED = {
    "refused_policy_without_name.json": "policy #1 (pattern '^project-ns-', vhost '/') has no 'name'",
    "refused_binding_type.json": "binding #1 (source 'x_demo', destination 'q_demo') has destination_type",
}
KINDS = ("exchanges", "queues", "bindings", "policies", "parameters")


def objects_of(data: dict[str, Any], vhost: str) -> dict[str, list[dict[str, Any]]]:
    """One vhost's objects of a file, without their vhost field (the body POST /api/definitions/{vhost} takes)."""
    per_vhost = "vhosts" not in data
    return {
        kind: [
            {k: v for k, v in item.items() if k != "vhost"}
            for item in data.get(kind) or []
            if per_vhost or item.get("vhost", "/") == vhost
        ]
        for kind in KINDS
    }


def vhost_settings(data: dict[str, Any], vhost: str) -> dict[str, Any]:
    """The PUT /api/vhosts body a full import gives the vhost (description, tags, default queue type)."""
    entry = next((v for v in data.get("vhosts") or [] if v.get("name") == vhost), data)
    metadata = {**{k: entry[k] for k in ("description", "default_queue_type", "tags") if k in entry}}
    metadata.update(entry.get("metadata") or {})
    body: dict[str, Any] = {}
    if metadata.get("description"):
        body["description"] = metadata["description"]
    if metadata.get("tags"):
        body["tags"] = ",".join(metadata["tags"])
    if metadata.get("default_queue_type"):
        body["defaultqueuetype"] = body["default_queue_type"] = metadata["default_queue_type"]
    return body


def broker_import(data: dict[str, Any], source: str, vhost: str) -> str:
    """What RabbitMQ's own import makes of the file's vhost, in ``vhost`` (created with its settings, as it does).

    Returns the broker's reason when this broker refuses the file ("" when it imports it).
    """
    api("PUT", f"vhosts/{quote(vhost, safe='')}", json=vhost_settings(data, source)).raise_for_status()
    answer = api("POST", f"definitions/{quote(vhost, safe='')}", json=objects_of(data, source))
    if answer.status_code == 400:
        return answer.text  # e.g. a transient queue where deprecated features are denied
    answer.raise_for_status()
    return ""


def state(vhost: str) -> dict[str, Any]:
    """A vhost's objects and settings, comparable across vhosts (a classic queue's x-queue-type is the broker's)."""
    found = api("GET", f"definitions/{quote(vhost, safe='')}").json()
    result: dict[str, Any] = {}
    for kind in KINDS:
        items = []
        for item in found.get(kind) or []:
            item = {k: v for k, v in item.items() if k != "vhost"}
            if kind == "queues" and item.get("arguments", {}).get("x-queue-type") == "classic":
                item["arguments"] = {k: v for k, v in item["arguments"].items() if k != "x-queue-type"}
            items.append(json.dumps(item, sort_keys=True))
        result[kind] = sorted(items)
    row = api("GET", f"vhosts/{quote(vhost, safe='')}").json()
    result["vhost"] = {"description": row.get("description") or "", "tags": sorted(row.get("tags") or [])}
    # no default queue type behaves as classic (and 4.x reports classic for a vhost that set none)
    result["vhost"]["default_queue_type"] = (row.get("default_queue_type") or "undefined").replace(
        "undefined", "classic"
    )
    return result


@contextmanager
def new_vhost(prefix: str) -> Iterator[str]:
    """A vhost name nobody made yet (apply creates it, with its settings, as on a new broker); deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        api("DELETE", f"vhosts/{quote(name, safe='')}")


def without_left_out(expected: dict[str, Any], stderr: str) -> dict[str, Any]:
    """The broker's import minus what export said it leaves out (objects named, vhost tags)."""
    named = set(
        re.findall(
            r"(?:queue|exchange) '([^']+)'",
            " ".join(
                x for x in stderr.splitlines() if x.startswith(("warning: left out", "warning: left out of vhost"))
            ),
        )
    )
    result = {**expected}
    for kind in ("exchanges", "queues"):
        result[kind] = [i for i in expected[kind] if json.loads(i)["name"] not in named]
    result["bindings"] = [
        i for i in expected["bindings"] if not ({json.loads(i)["source"], json.loads(i)["destination"]} & named)
    ]
    if "tags of vhost" in stderr:
        result["vhost"] = {**expected["vhost"], "tags": []}
    return result


@pytest.mark.broker
@pytest.mark.parametrize("name", sorted(IMPORTED))
def test_a_definitions_file_adopted_gives_what_the_broker_import_gives(name: str, tmp_path: Path) -> None:
    data = json.loads((DEFINITIONS / name).read_text())
    source = IMPORTED[name]
    out = tmp_path / "topology.yaml"
    exported = cli("export", "--definitions", str(DEFINITIONS / name), "--vhost", source, "-o", str(out))
    assert exported.exit_code == 0, exported.output
    assert "problem:" not in exported.stderr, exported.stderr
    with new_vhost("corpus-import") as imported, new_vhost("corpus-adopted") as adopted:
        refused = broker_import(data, source, imported)
        out.write_text(re.sub(r"(?m)^vhost: .*$", f"vhost: {scalar(adopted)}", out.read_text(), count=1))
        if refused:  # this broker refuses the file: export named the object, or apply fails naming it
            warned = {name for line in exported.stderr.splitlines() for name in re.findall(r"'([^']+)'", line)}
            if not any(f'<<"{name}">>' in refused.replace('\\"', '"') for name in warned):
                applied = cli("apply", str(out))
                assert applied.exit_code != 0 and re.search(r"queue '[^']+'|exchange '[^']+'", applied.output), refused
            return
        for step in (("validate",), ("apply",), ("plan", "--detailed-exitcode")):
            result = cli(*step, str(out))
            assert result.exit_code == 0, f"{step}: {result.output}"
        expected, got = without_left_out(state(imported), exported.stderr), state(adopted)
        if name == "duplicates.json":  # the broker keeps either entry: the export names the one it kept
            assert "queue 'orders' of vhost '/' is listed 2 times" in exported.stderr
            assert "the export keeps entry 1" in exported.stderr
            got["queues"] = expected["queues"] = [q for q in got["queues"] if '"orders"' not in q]
        assert got == expected
        assert len(got["parameters"]) == len(objects_of(data, source)["parameters"])  # limits, operator policies
    rendered = cli("render", str(out), "-o", str(tmp_path / "celeryconfig.py"))
    assert rendered.exit_code == 0, rendered.output


@pytest.mark.broker
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_file_the_broker_refuses_is_refused_in_one_line_naming_the_object(name: str) -> None:
    data = json.loads((DEFINITIONS / name).read_text())
    with fresh_vhost("corpus-refused") as vhost:
        assert api("POST", f"definitions/{quote(vhost, safe='')}", json=objects_of(data, "/")).status_code == 400
    result = cli("export", "--definitions", str(DEFINITIONS / name))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and REFUSED[name] in result.stderr, result.stderr


def test_a_one_vhost_file_is_never_split_and_needs_its_vhost_named(tmp_path: Path) -> None:
    for name in ("per_vhost_body.json", "single_vhost_format.json"):
        refused = cli("export", "--definitions", str(DEFINITIONS / name))
        assert refused.exit_code == 1 and "name the vhost they belong to with one --vhost" in refused.stderr
    out = tmp_path / "payments.yaml"
    assert (
        cli(
            "export", "--definitions", str(DEFINITIONS / "per_vhost_body.json"), "--vhost", "shop", "-o", str(out)
        ).exit_code
        == 0
    )
    document = yaml.safe_load(out.read_text())
    assert document["vhost"] == "shop" and "vhosts" not in document
    assert set(document["queues"]) == {"qq.1", "cq.1"} and set(document["policies"]) == {"cq-length"}
    assert set(document["operator_policies"]) == {"cap-classic"}


APP_CASES = {  # module -> (whether its queues are on the broker before export, what export must say)
    "shop_tasks": (True, []),
    "media_pipeline": (True, ["is a regular expression"]),
    "router_app": (True, ["routed at publish time by router", "queue 'spare' is in the app's task_queues"]),
    "default_only": (False, ["queue 'celery' is not on the broker yet: Celery declares it by itself"]),
}


@pytest.mark.broker
@pytest.mark.parametrize("module", sorted(APP_CASES))
def test_a_corpus_app_is_adopted_and_its_worker_runs_every_task(module: str, tmp_path: Path) -> None:
    shutil.copy(APPS / f"{module}.py", tmp_path / f"{module}.py")
    declare, said = APP_CASES[module]
    with fresh_vhost("corpus-app") as source, fresh_vhost("corpus-worker") as target:
        adopted = adopt(tmp_path, module, source, target, declare=declare)
    for line in said:
        assert line in adopted.export_stderr, adopted.export_stderr
    assert set(adopted.ran.values()) == {2}, summary(adopted)
