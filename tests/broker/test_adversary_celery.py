"""Celery apps written as real projects write them, found wanting in an adversarial pass (issue 25).

Each app is exported from an empty vhost, applied into the vhost under test and
rendered; then every task is published twice over AMQP, once with the app's own
settings and once with the rendered config, and the messages are counted where
they land: each must sit in a queue a worker of the rendered config consumes.
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml
from click.testing import Result
from provision_cli import run
from rabbit import amqp_url, fresh_vhost, parameters

# A route naming a kombu Queue object (static table and router answer): Celery declares that queue each time it
# publishes there, so the tasks land in it; the export must carry the queue and route the tasks to it.
QUEUE_OBJECT_ROUTES = """
import os
from celery import Celery
from kombu import Exchange, Queue

app = Celery("MOD", broker=os.environ.get("CELERY_BROKER_URL"))


def router(name, args, kwargs, options, task=None, **kw):
    if name == "MOD.answered":
        return {"queue": Queue("MOD.answer", Exchange("MOD.answer"), routing_key="MOD.answer")}
    return None


app.conf.task_routes = (
    router,
    {
        "MOD.topical": {"queue": Queue("MOD.custom", Exchange("MOD.custom", type="topic"), routing_key="custom.#")},
        "MOD.keyed": {"queue": Queue("MOD.keyq", Exchange("MOD.keyx"), routing_key="k"), "routing_key": "k"},
    },
)


@app.task(name="MOD.topical")
def topical():
    return None


@app.task(name="MOD.keyed")
def keyed():
    return None


@app.task(name="MOD.answered")
def answered():
    return None


@app.task(name="MOD.plain")
def plain():
    return None
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A fresh module name (Celery shares tasks of one name across the apps of a process) in its own folder."""
    module = f"adv_{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module, tmp_path
    for name in [m for m in sys.modules if m == module or m.startswith("celeryconfig_")]:
        del sys.modules[name]


def adopt_and_publish(module: str, folder: Path, source: str, target: str) -> tuple[dict[str, Any], dict[str, int]]:
    """export (from ``source``), apply into ``target``, render; publish every task from both configs; counts."""
    topology = folder / "topology.yaml"
    exported = run("export", "--vhost", source, "--celery-app", f"{module}:app", "-o", str(topology))
    assert exported.exit_code == 0 and "problem:" not in exported.stderr, exported.output
    document = yaml.safe_load(topology.read_text())
    document["vhost"] = target
    topology.write_text(yaml.safe_dump(document))
    for step in (("apply",), ("plan", "--detailed-exitcode")):
        assert run(*step, str(topology)).exit_code == 0, run(*step, str(topology)).output
    config = f"celeryconfig_{module}"
    assert run("render", str(topology), "-o", str(folder / f"{config}.py")).exit_code == 0
    app = importlib.import_module(module).app
    names = sorted(n for n in app.tasks if n.startswith(f"{module}."))
    app.conf.broker_url = amqp_url(target)
    with app.connection_for_write() as connection:
        for name in names:
            app.tasks[name].apply_async(connection=connection)
    rendered = importlib.import_module(config)
    app.conf.task_queues, app.conf.task_routes = rendered.task_queues, rendered.task_routes
    app.conf.task_create_missing_queues = rendered.task_create_missing_queues
    app.conf.task_default_queue = rendered.task_default_queue
    app.amqp.__dict__.pop("router", None)
    app.amqp._queues = None  # Celery caches both: built again from the rendered settings
    consumed = sorted(app.amqp.queues)
    with app.connection_for_write() as connection:
        for name in names:
            app.tasks[name].apply_async(connection=connection)
    connection = pika.BlockingConnection(parameters(target))
    try:
        counts = {q: connection.channel().queue_declare(q, passive=True).method.message_count for q in consumed}
    finally:
        connection.close()
    return document, {"published": 2 * len(names), **counts}


def test_queue_objects_in_routes_are_exported_and_consumed(app_module: tuple[str, Path], vhost_name: str) -> None:
    module, folder = app_module
    (folder / f"{module}.py").write_text(QUEUE_OBJECT_ROUTES.replace("MOD", module))
    with fresh_vhost("adv-src") as source:  # empty: Celery has declared nothing yet
        document, counts = adopt_and_publish(module, folder, source, vhost_name)
    tasks = {  # Celery shares tasks of other test apps made in this process with this one: only its own count
        name.removeprefix(f"{module}."): spec["queue"]
        for name, spec in document["tasks"].items()
        if name.startswith(f"{module}.")
    }
    assert tasks == {"topical": f"{module}.custom", "keyed": f"{module}.keyq", "answered": f"{module}.answer"}
    # each of four tasks once from each config, every one in a queue the rendered worker consumes
    assert counts == {
        "published": 8,
        "celery": 2,
        f"{module}.custom": 2,
        f"{module}.keyq": 2,
        f"{module}.answer": 2,
    }, json.dumps(counts)


def exported_from_nothing(module: str, folder: Path, source: str) -> Result:
    """``export --celery-app`` of the app module ``source`` over a broker that holds nothing yet (exit 0)."""
    (folder / f"{module}.py").write_text(source)
    empty = folder / "empty.json"
    empty.write_text(json.dumps({"vhosts": [{"name": "/"}], "exchanges": [], "queues": [], "bindings": []}))
    result = run("export", "--definitions", str(empty), "--celery-app", f"{module}:app")
    assert result.exit_code == 0, result.output
    return result


def test_a_task_sent_to_an_exchange_nobody_declares_is_said_to_be_refused(
    app_module: tuple[str, Path],
) -> None:
    """The broker refuses a publish to a missing exchange (404, channel closed); it does not drop it quietly."""
    module, folder = app_module
    result = exported_from_nothing(
        module,
        folder,
        "from celery import Celery\napp = Celery('x')\n"
        f"@app.task(name='{module}.ev', exchange='{module}.events', exchange_type='topic', routing_key='ev.x')\n"
        "def ev():\n    return None\n",
    )
    assert (
        f"task '{module}.ev' is published to exchange '{module}.events' with routing key 'ev.x', which vhost '/' "
        "does not hold and the app does not declare: the broker refuses the publish" in result.stderr
    ), result.stderr


def test_a_route_celery_cannot_read_names_the_task_instead_of_an_internal_error(
    app_module: tuple[str, Path],
) -> None:
    """A bare kombu Queue as a route value (not ``{'queue': Queue(...)}``): Celery's MapRoute raises TypeError."""
    module, folder = app_module
    result = exported_from_nothing(
        module,
        folder,
        "from celery import Celery\nfrom kombu import Queue\napp = Celery('x')\n"
        f"app.conf.task_routes = {{'{module}.track': Queue('{module}.track')}}\n"
        f"@app.task(name='{module}.track')\ndef track():\n    return None\n"
        f"@app.task(name='{module}.plain')\ndef plain():\n    return None\n",
    )
    assert (
        f"problem: <stdout>:1: task '{module}.track' cannot be sent by the app itself "
        "(TypeError: 'Queue' object is not iterable); left out" in result.stderr
    ), result.stderr
    assert yaml.safe_load(result.stdout)["celery"]["default_queue"] == "celery"


def test_a_queue_the_app_never_declares_is_not_said_to_be_declared_by_celery(app_module: tuple[str, Path]) -> None:
    """kombu's Queue(no_declare=True): Celery never declares it; the export keeps it (apply creates it)."""
    module, folder = app_module
    result = exported_from_nothing(
        module,
        folder,
        "from celery import Celery\nfrom kombu import Queue\napp = Celery('x')\n"
        f"app.conf.task_queues = [Queue('{module}.ext', no_declare=True), Queue('{module}.own')]\n"
        f"app.conf.task_routes = {{'{module}.a': {{'queue': '{module}.ext'}},\n"
        f"                         '{module}.b': {{'queue': '{module}.own'}}}}\n"
        f"@app.task(name='{module}.a')\ndef a():\n    return None\n"
        f"@app.task(name='{module}.b')\ndef b():\n    return None\n",
    )
    assert f"queue '{module}.ext' is not on the broker yet, and the app never declares it (no_declare=True)" in (
        result.stderr
    ), result.stderr
    assert f"queue '{module}.own' is not on the broker yet: Celery declares it by itself" in result.stderr
    assert {f"{module}.ext", f"{module}.own"} <= set(yaml.safe_load(result.stdout)["queues"])
