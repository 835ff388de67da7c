"""A kind added the way the next ones will be: one Kind in a module of its own, one line in the registry.

Here a toy upstream (federation upstreams are a real kind now, provisioner/parameters) is registered for
the test alone (no broker): the
topology file takes its section (the schema knows it), the live state reads it
from the definitions' parameters, and the diff compares it field by field.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from provisioner import kinds
from provisioner.diff import differences
from provisioner.errors import TopologyInvalid
from provisioner.kinds.kind import Kind
from provisioner.live_state import live_from_definitions
from provisioner.plan import Action
from provisioner.topology import load, schema


@dataclass(frozen=True)
class Upstream:
    vhost: str
    name: str
    uri: str
    expires: int | None = None
    kind: ClassVar[str] = "toy_upstream"

    @property
    def key(self) -> tuple[str, ...]:
        return ("toy_upstream", self.vhost, self.name)


def _read(vhost: str, item: dict[str, Any]) -> Upstream:
    return Upstream(vhost, item["name"], item["value"]["uri"], item["value"].get("expires"))


UPSTREAM = Kind(
    "toy_upstream",
    creation=95,
    deletion=5,
    handlers={Action.CREATE: lambda executor, changes: None, Action.UPDATE: lambda executor, changes: None},
    compared=("uri", "expires"),
    describe=lambda upstream: f"uri {upstream.uri}",
    section="toy_upstreams",
    schema={
        "type": "object",
        "required": ["uri"],
        "additionalProperties": False,
        "properties": {"uri": {"type": "string"}, "expires": {"type": "integer"}},
    },
    expand=lambda vhost, name, spec: Upstream(vhost, name, spec["uri"], spec.get("expires")),
    definitions="parameters",
    accepts=lambda item: item.get("component") == "federation-upstream",
    read=_read,
)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """UPSTREAM in the registry, as its one line in KINDS would put it, for this test only."""
    monkeypatch.setitem(kinds.KINDS, UPSTREAM.name, UPSTREAM)
    for index, action in enumerate((Action.CREATE, Action.UPDATE)):
        monkeypatch.setitem(kinds.PHASE_INDEX, (action, UPSTREAM.name), 1000 + index)
    caches = (schema.topology_schema, schema._validator, schema._is_valid)
    for cache in caches:
        cache.cache_clear()
    yield
    monkeypatch.undo()
    for cache in caches:
        cache.cache_clear()


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(textwrap.dedent(body))
    return path


LIVE = {
    "parameters": [
        {"component": "federation-upstream", "name": "origin", "value": {"uri": "amqp://old-host"}},
        {"component": "federation-upstream", "name": "forgotten", "value": {"uri": "amqp://gone"}},
        {"component": "shovel", "name": "origin", "value": {"src-uri": "amqp://x"}},  # another kind's parameter
    ]
}


def test_an_added_kind_is_loaded_read_and_compared_field_by_field(registered: None, tmp_path: Path) -> None:
    desired = load(
        [
            write(
                tmp_path,
                "version: 1\nvhost: v\ntoy_upstreams:\n  origin: {uri: 'amqp://new-host', expires: 60}\n",
            )
        ]
    )
    assert desired.others == (Upstream("v", "origin", "amqp://new-host", 60),)
    live = live_from_definitions("v", LIVE)
    assert live.topology.others == (
        Upstream("v", "forgotten", "amqp://gone"),
        Upstream("v", "origin", "amqp://old-host"),
    )

    plan = differences(desired, {"v": live})
    (change,) = plan.changes
    assert (change.action, change.kind, change.name) == (Action.UPDATE, "toy_upstream", "origin")
    assert [(f.field, f.before, f.after, f.forces_replacement) for f in change.fields] == [
        ("uri", "amqp://old-host", "amqp://new-host", False),
        ("expires", None, 60, False),
    ]
    assert change.reason == "uri: amqp://old-host -> amqp://new-host; expires: (none) -> 60"
    assert [(u.resource.kind, u.resource.name) for u in plan.unmanaged] == [("toy_upstream", "forgotten")]


def test_the_schema_takes_the_added_kinds_section(registered: None, tmp_path: Path) -> None:
    with pytest.raises(TopologyInvalid, match="uri"):
        load([write(tmp_path, "version: 1\nvhost: v\ntoy_upstreams:\n  origin: {expires: 60}\n")])


def test_without_its_registration_the_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TopologyInvalid, match="toy_upstreams"):
        load([write(tmp_path, "version: 1\nvhost: v\ntoy_upstreams:\n  origin: {uri: 'amqp://h'}\n")])
