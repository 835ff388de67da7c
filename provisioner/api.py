"""The library's entry points: the CLI's pipeline as plain calls with typed results, nothing printed.

``import provisioner`` re-exports these lazily, so the CLI's start never pays for pika or requests.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from provisioner.apply import ApplyReport, converge
from provisioner.broker.clients import BrokerClients as Broker
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.live import read_live as _read_live
from provisioner.broker.management import Management
from provisioner.broker.retry import Backoff
from provisioner.celery.render import render as _render
from provisioner.errors import Problem
from provisioner.export.run import Export
from provisioner.export.run import export_topology as _export_topology
from provisioner.export.source import from_broker, from_file
from provisioner.live_state import IncludeObject, LiveVhost, ignoring, include_object
from provisioner.options import ApplyOptions
from provisioner.plan import Plan
from provisioner.planning import make_plan as _make_plan
from provisioner.topology import Topology, load

__all__ = [
    "ApplyOptions",
    "ApplyReport",
    "Broker",
    "Export",
    "IncludeObject",
    "LiveVhost",
    "Plan",
    "Topology",
    "apply_topology",
    "connect",
    "export_topology",
    "ignoring",
    "include_object",
    "load_topology",
    "make_plan",
    "parse_topology",
    "read_live",
    "render_config",
]


def connect(
    amqp_url: str | None = None,
    management_url: str | None = None,
    ca_file: str | None = None,
    retry_seconds: float = 15.0,
) -> Broker:
    """A broker to plan and apply against, as the CLI finds it; URLs are checked here, nothing is contacted yet."""
    found = Endpoints.from_environment()
    endpoints = Endpoints(
        amqp_url or found.amqp_url, management_url or found.management_url, ca_file or found.ca_file
    ).check()
    backoff = Backoff(attempts=1 + int(retry_seconds > 0) * 7, deadline=retry_seconds)
    return Broker(endpoints, Management(endpoints, backoff=backoff))


def load_topology(
    *files: str | Path, environ: Mapping[str, str] | None = None, warnings: list[Problem] | None = None
) -> Topology:
    """Load and validate topology files as one topology; TopologyInvalid carries every problem."""
    return load(files, environ=environ, warnings=warnings)


def parse_topology(
    text: str, environ: Mapping[str, str] | None = None, warnings: list[Problem] | None = None
) -> Topology:
    """A topology from YAML text, checked exactly as a file is (problems name it ``<text>.yaml``)."""
    with tempfile.TemporaryDirectory(prefix="provisioner-") as folder:
        file = Path(folder) / "<text>.yaml"
        file.write_text(text, encoding="utf-8")
        return load([file], environ=environ, warnings=warnings)


def read_live(topology: Topology, broker: Broker, include: IncludeObject = include_object) -> dict[str, LiveVhost]:
    """The live state of the topology's vhosts, normalised as the diff compares it, as ``include`` lets it be seen."""
    return _read_live(broker.management, [vhost.name for vhost in topology.vhosts], topology, include)


def make_plan(topology: Topology, broker: Broker, prune: bool = False, include: IncludeObject = include_object) -> Plan:
    """What apply would change, with exact message counts for queues it would replace or delete."""
    return _make_plan(topology, broker.management, prune, broker.endpoints, include=include)


def apply_topology(topology: Topology, broker: Broker, options: ApplyOptions | None = None) -> ApplyReport:
    """Converge the broker to the topology under the vhost lock; UnsafeChange when options do not allow it."""
    return converge(topology, broker.endpoints, broker.management, options or ApplyOptions())


def render_config(topology: Topology, sources: Iterable[str] | None = None) -> str:
    """The Celery config module's source for the topology."""
    return _render(topology, sources=sources)


def export_topology(
    broker: Broker | None = None, vhosts: Sequence[str] = (), definitions_file: str | None = None
) -> Export:
    """The topology text of a live broker's vhosts (every vhost by default), or of a definitions file."""
    if definitions_file is not None:
        return _export_topology(from_file(definitions_file, vhosts))
    if broker is None:
        raise TypeError("export_topology needs a broker or a definitions_file")
    return _export_topology(from_broker(broker.management, vhosts))
