"""`provision render`: golden files, determinism, --check exit codes, no credentials."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.celery.render import render
from provisioner.cli import main
from provisioner.topology import load

REPO = Path(__file__).resolve().parent.parent.parent
GOLDEN = Path(__file__).parent.parent / "fixtures" / "render"


@pytest.mark.parametrize("name", ["seed", "shop"])
def test_render_matches_the_golden_file(name: str) -> None:
    source = f"topologies/{name}.yaml"
    text = render(load([REPO / source], environ={}), sources=[source])
    assert text == (GOLDEN / f"{name}_celeryconfig.py").read_text()
    assert text == render(load([REPO / source], environ={}), sources=[source])  # byte-identical


def test_rendered_module_imports_and_carries_the_broker_arguments(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    spec = importlib.util.spec_from_file_location("shop_config", GOLDEN / "shop_celeryconfig.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    queues = {q.name: q for q in module.task_queues}
    assert set(queues) == {"billing", "celery", "notifications.email", "orders"}  # never a DLQ or foreign queue
    assert queues["orders"].queue_arguments["x-queue-type"] == "quorum"
    assert queues["orders"].no_declare and queues["orders"].exchange.no_declare
    assert queues["notifications.email"].queue_arguments["x-max-length"] == 50000
    # classic queues name their type too: a vhost whose default queue type is quorum must not change them
    assert queues["notifications.email"].queue_arguments["x-queue-type"] == "classic"
    assert module.task_routes["notifications.tasks.handle_sms_receipt"] == {"queue": "celery"}
    assert module.provisioner_foreign_consumers == {"notifications.sms": "notifications.tasks.handle_sms_receipt"}
    assert module.broker_url == "amqp://localhost:5672/shop"
    assert module.task_create_missing_queues is False and module.task_acks_on_failure is False
    assert module.provisioner_retry_queues["billing"][4000] == "billing.retry.4s"  # retries wait in the broker
    assert "billing.retry.4s" not in module.provisioner_dead_letters  # a retry queue never runs a task


def test_render_check_exit_codes(tmp_path: Path) -> None:
    output = tmp_path / "celeryconfig.py"
    seed = str(REPO / "topologies" / "seed.yaml")
    assert CliRunner().invoke(main, ["render", seed, "-o", str(output)]).exit_code == 0
    assert CliRunner().invoke(main, ["render", "--check", seed, "-o", str(output)]).exit_code == 0
    output.write_text(output.read_text().replace("'celery'", "'other'", 1))
    stale = CliRunner().invoke(main, ["render", "--check", seed, "-o", str(output)])
    assert stale.exit_code == 2 and "stale" in stale.output
    missing = CliRunner().invoke(main, ["render", "--check", seed, "-o", str(tmp_path / "none.py")])
    assert missing.exit_code == 2, missing.output
    assert missing.output.startswith(f"stale: {tmp_path / 'none.py'} does not exist; run: provision render ")


def test_render_check_does_not_depend_on_how_a_path_is_spelled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    output = tmp_path / "celeryconfig.py"
    assert CliRunner().invoke(main, ["render", "topologies/seed.yaml", "-o", str(output)]).exit_code == 0
    written = output.read_text()
    for spelling in (
        "./topologies/seed.yaml",
        str(REPO / "topologies" / "seed.yaml"),
        "topologies/../topologies/seed.yaml",
    ):
        checked = CliRunner().invoke(main, ["render", "--check", spelling, "-o", str(output)])
        assert checked.exit_code == 0, (spelling, checked.output)
    monkeypatch.chdir(tmp_path)  # another working directory, the same files
    checked = CliRunner().invoke(
        main, ["render", "--check", str(REPO / "topologies/seed.yaml"), "-o", "celeryconfig.py"]
    )
    assert checked.exit_code == 0, checked.output
    # named from the output's folder, whatever the spelling or working directory
    assert written.splitlines()[1] == f"# Source: {os.path.relpath(REPO / 'topologies' / 'seed.yaml', tmp_path)}"


def test_no_credentials_in_the_rendered_file(tmp_path: Path) -> None:
    output = tmp_path / "celeryconfig.py"
    env = {"PROVISION_AMQP_URL": "amqp://admin:hunter2@broker:5672/", "CELERY_BROKER_URL": "amqp://u:hunter2@x//"}
    result = CliRunner().invoke(main, ["render", str(REPO / "topologies" / "seed.yaml"), "-o", str(output)], env=env)
    assert result.exit_code == 0
    assert "hunter2" not in output.read_text() and "guest" not in output.read_text()


def test_jitter_is_an_explicit_retry_option(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    base = "version: 1\nqueues: {celery: {}}\ntasks:\n  a.b: {queue: celery, retry: RETRY}\n"
    topology.write_text(base.replace("RETRY", "{delay: 1}"))
    assert "'jitter': False" in render(load([topology], environ={}))  # default: the delay is the wait
    topology.write_text(base.replace("RETRY", "{delay: 1, jitter: true}"))
    assert "'jitter': True" in render(load([topology], environ={}))
    topology.write_text(base.replace("RETRY", "{delay: 1, jitter: true, via: broker}"))
    refused = CliRunner().invoke(main, ["validate", str(topology)])
    assert refused.exit_code == 1 and "jitter needs via: worker" in refused.output


def test_run_on_routes_a_foreign_task_and_is_checked(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    base = "version: 1\nqueues: {celery: {}, catalog: {}, example: {}}\ntasks:\n  a.b: {queue: example, SPEC}\n"
    topology.write_text(base.replace("SPEC", "consume: foreign, run_on: catalog"))
    text = render(load([topology], environ={}))
    assert "'a.b': {'queue': 'catalog'}" in text and "        'catalog',\n" in text  # routed there, consumed there
    for spec, problem in [
        ("consume: foreign, run_on: nowhere", "queue 'nowhere' is not defined"),
        ("run_on: catalog", "run_on is where a foreign message's task runs"),
        ("consume: foreign, run_on: example", "run_on 'example' is a foreign queue"),
    ]:
        topology.write_text(base.replace("SPEC", spec))
        refused = CliRunner().invoke(main, ["validate", str(topology)])
        assert refused.exit_code == 1 and problem in refused.output, (spec, refused.output)


def _rendered_app(text: str, folder: Path):
    """A Celery app on the rendered module, as a worker or publisher loads it."""
    from celery import Celery

    module = folder / "rendered_config.py"
    module.write_text(text)
    spec = importlib.util.spec_from_file_location("rendered_config", module)
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    app = Celery("rendered", set_as_current=False)
    app.config_from_object(config)
    return app


def test_every_queue_a_task_names_is_consumed_and_routed_to(tmp_path: Path) -> None:
    """Tasks to many queues (by name and glob, foreign with and without run_on): Celery routes each, none missing."""
    queues = "\n".join(f"  q{i}:\n    bindings: [{{exchange: x, routing_key: k{i}}}]" for i in range(12))
    tasks = "\n".join(f"  app.t{i}: {{queue: q{i}}}" for i in range(8))
    document = (
        "version: 1\nvhost: v\nexchanges:\n  x: {type: topic}\nqueues:\n"
        + queues
        + "\n  inbox: {}\n  celery: {}\ntasks:\n"
        + tasks
        + "\n  glob.*: {queue: q8}\n  app.foreign: {queue: inbox, consume: foreign, run_on: q9}\n"
        + "  app.foreign2: {queue: q10, consume: foreign}\ncelery: {default_queue: celery}\n"
    )
    (tmp_path / "t.yaml").write_text(document)
    topology = load([tmp_path / "t.yaml"], environ={})
    app = _rendered_app(render(topology), tmp_path)
    consumed = {q.name for q in app.conf.task_queues}
    assert consumed == {f"q{i}" for i in range(10)} | {"celery"}  # never the foreign queues themselves
    expected = {f"app.t{i}": f"q{i}" for i in range(8)} | {"glob.any": "q8", "app.foreign": "q9"}
    expected |= {"app.foreign2": "celery", "unrouted.task": "celery"}
    for name, queue in expected.items():
        assert app.amqp.router.route({}, name)["queue"].name == queue  # no QueueNotFound
