"""A routing setting the app sets itself shadows the rendered config (Celery keeps the app's): install says so."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

import provisioner.celery
from provisioner.celery.runtime import shadowed_settings

RENDERED = """
task_routes = {'a.*': {'queue': 'rendered'}}
task_default_queue = 'rendered'
task_create_missing_queues = False
provisioner_dead_letters = {}
"""


@pytest.fixture
def rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"rendered_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(RENDERED)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_settings_the_app_sets_itself_are_named_once_the_app_is_finalized(
    rendered: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Celery("shadowing", set_as_current=False)
    app.conf.update(task_routes={"a.*": {"queue": "own"}})  # before config_from_object: Celery keeps it anyway
    app.config_from_object(rendered)
    app.conf.task_default_queue = "own-default"  # after: kept too
    provisioner.celery.install(app)
    with caplog.at_level(logging.WARNING, logger="provisioner.celery"):
        app.finalize()
    assert app.conf.task_routes == {"a.*": {"queue": "own"}}  # what Celery does: the reason for the warning
    assert shadowed_settings(app) == ["task_routes", "task_default_queue"]
    (record,) = [r for r in caplog.records if "rendered config" in r.getMessage()]
    assert "task_routes, task_default_queue" in record.getMessage() and record.levelno == logging.WARNING


def test_an_app_that_leaves_routing_to_the_rendered_config_hears_nothing(
    rendered: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Celery("plain", set_as_current=False)
    app.config_from_object(rendered)
    app.conf.task_acks_late = True  # not a routing setting
    provisioner.celery.install(app)
    with caplog.at_level(logging.WARNING, logger="provisioner.celery"):
        app.finalize()
    assert shadowed_settings(app) == [] and app.conf.task_default_queue == "rendered"
    assert not [r for r in caplog.records if "rendered config" in r.getMessage()]


def test_without_a_rendered_config_the_apps_own_settings_are_all_there_is() -> None:
    app = Celery("own", set_as_current=False)
    app.conf.update(task_routes={"a": {"queue": "q"}}, task_default_queue="q")
    assert shadowed_settings(app) == []
