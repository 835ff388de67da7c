"""What validate accepts, apply applies, the broker keeps, and the rendered config imports.

A property test over queue argument tables drawn from the space validate accepts
(the x-argument table's types and ranges, and unknown arguments limited to what
AMQP tables carry), against the real broker in a fresh vhost each time.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rabbit import DENY_DEPRECATED, api, endpoints, wait_for

from provisioner.apply import ApplyOptions, converge, make_plan
from provisioner.broker.management import Management
from provisioner.celery.render import render
from provisioner.topology import load
from provisioner.topology.arguments import INT64_MAX, INT64_MIN, MAX_EXPIRY_MS, QUEUE_ARGUMENTS
from provisioner.topology.checks import plain_name

# Control, separator, bidi, format and private-use characters are refused in every value (text_guard.py): the rest.
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Co", "Zl", "Zp")), max_size=12)
INT64 = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
AMQP_VALUE = st.recursive(
    st.one_of(TEXT, st.booleans(), INT64),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def _known(name: str) -> st.SearchStrategy[Any]:
    """Values the table accepts for a known argument (integers also as decimal strings, as files write them)."""
    argument = QUEUE_ARGUMENTS[name]
    if argument.kind == "bool":
        return st.booleans()
    if argument.choices:
        return st.sampled_from(argument.choices)
    if name == "x-dead-letter-exchange":  # the topology defines it, so it must be a name validate takes
        return TEXT.filter(plain_name)
    if argument.kind == "str":
        return TEXT
    number = st.integers(min_value=argument.minimum, max_value=argument.maximum)
    return number | number.map(str)


# Arguments a classic queue takes. x-expires is kept long: a queue that expires during the test is not drift.
CLASSIC_ARGUMENTS = {
    name: _known(name)
    for name in (
        "x-max-length",
        "x-max-length-bytes",
        "x-message-ttl",
        "x-overflow",
        "x-max-priority",
        "x-single-active-consumer",
        "x-queue-mode",
        "x-dead-letter-exchange",
        # Deprecated: refused where deprecated features are denied (tests/broker/test_readiness.py shows it).
        *(() if DENY_DEPRECATED else ("x-queue-master-locator",)),
    )
}
CLASSIC_ARGUMENTS["x-expires"] = st.integers(min_value=3_600_000, max_value=MAX_EXPIRY_MS)
CLASSIC_ARGUMENTS["x-test-plugin"] = AMQP_VALUE

TABLES = st.fixed_dictionaries({}, optional=CLASSIC_ARGUMENTS)


@pytest.mark.broker
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TABLES)
def test_accepted_arguments_apply_converge_and_render(tmp_path_factory: Any, arguments: dict[str, Any]) -> None:
    vhost = f"test-args-{uuid.uuid4().hex[:10]}"
    folder = tmp_path_factory.mktemp("args")
    topology = {
        "version": 1,
        "vhost": vhost,
        "queues": {"work": {"arguments": arguments}},
        "tasks": {"app.work": {"queue": "work"}},
        "celery": {"default_queue": "work"},
    }
    dead_letter = arguments.get("x-dead-letter-exchange")
    if dead_letter and not dead_letter.startswith("amq."):
        topology["exchanges"] = {dead_letter: {"type": "direct"}}  # a dead-letter exchange must be one we know
    assume(not (dead_letter or "").startswith("amq.") or dead_letter in ("amq.direct", "amq.topic", "amq.fanout"))
    file = folder / "topology.yaml"
    file.write_text(yaml.safe_dump(topology, allow_unicode=True))
    desired = load([file], environ={})  # validate accepts it
    management = Management(endpoints())
    try:
        report = converge(desired, endpoints(), management, ApplyOptions(workers=1))
        assert not report.plan.is_empty
        again = make_plan(desired, management)
        assert again.is_empty, [str(c) for c in again.changes]
        live = api("GET", f"queues/{quote(vhost, safe='')}/work").json()["arguments"]
        for name in arguments:
            assert name in live, (name, live)
    finally:
        wait_for(lambda: _deleted(vhost), timeout=600)
    config = folder / "celeryconfig_under_test.py"
    config.write_text(render(desired))
    module = _import(config)
    (queue,) = module.task_queues
    rendered = {name: value for name, value in queue.queue_arguments.items() if name != "x-queue-type"}
    assert rendered == desired.queues[0].arguments


def _deleted(vhost: str) -> bool:
    """Delete the test's vhost; a busy shared broker may answer slowly, so a timeout means: ask again."""
    try:
        return api("DELETE", f"vhosts/{quote(vhost, safe='')}").status_code in (204, 404)
    except requests.Timeout:
        return False


def _import(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
