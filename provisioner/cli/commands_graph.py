"""`provision graph`: the topology as a picture (Mermaid, Graphviz DOT, or SVG through Graphviz's dot)."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import click

from provisioner.broker.clients import BrokerClients as Broker
from provisioner.cli.clients import broker_options
from provisioner.cli.group import main
from provisioner.cli.output import reports_errors, write_document
from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    from provisioner.graph.model import Graph
    from provisioner.topology.model import Topology

NO_GRAPHVIZ = (
    "--format svg needs Graphviz's `dot`, which is not installed: apt-get install graphviz (Debian, Ubuntu), "
    "dnf install graphviz (Fedora), brew install graphviz (macOS); or use --format mermaid or dot"
)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--live", is_flag=True, help="Draw what the broker holds, with drift marked (missing, differs, extra).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "dot", "svg"]),
    default="mermaid",
    show_default=True,
    help="mermaid renders in pull requests and docs; svg needs Graphviz.",
)
@click.option(
    "-o", "--output", default="-", show_default=True, help="Where to write the picture; - for standard output."
)
@broker_options
@reports_errors
def graph(files: tuple[str, ...], live: bool, output_format: str, output: str, broker: Broker) -> None:
    """Draw exchanges, queues, bindings and their keys, dead-letter and retry paths, Celery tasks and publishers."""
    from provisioner.graph.render import dot, mermaid
    from provisioner.topology import load

    if output_format == "svg" and shutil.which("dot") is None:
        raise ProvisionerError(NO_GRAPHVIZ)
    desired = load(files)
    picture = _live_graph(desired, broker) if live else _graph(desired)
    text = mermaid(picture) if output_format == "mermaid" else dot(picture)
    if output_format == "svg":
        text = _svg(text)
    write_document(text, output, wrote_to_stderr=True)


def _graph(desired: Topology) -> Graph:
    from provisioner.graph.model import build

    return build(desired)


def _live_graph(desired: Topology, broker: Broker) -> Graph:
    """The broker's objects and the topology's, each marked as the plan finds it."""
    from provisioner.broker.live import read_live
    from provisioner.graph.model import DIFFERS, MISSING, UNMANAGED, build
    from provisioner.plan import Action
    from provisioner.planning import make_plan
    from provisioner.topology.model import Topology

    vhosts = [vhost.name for vhost in desired.vhosts]
    states = read_live(broker.management, vhosts, desired)
    plan = make_plan(desired, broker.management, live_soon=lambda *_: states)
    status = {change.key: MISSING if change.action is Action.CREATE else DIFFERS for change in plan.changes}
    status |= {item.resource.key: UNMANAGED for item in plan.unmanaged}
    for item in plan.drift:  # a policy outside the topology changes these objects: they behave otherwise
        for hit in item.hits:
            status.setdefault((hit.kind, item.policy.vhost, hit.name), DIFFERS)
    held = [state.topology for state in states.values() if state.exists]
    on_broker = Topology(
        exchanges=tuple(x for part in held for x in part.exchanges),
        queues=tuple(q for part in held for q in part.queues),
        bindings=tuple(b for part in held for b in part.bindings),
    )
    return build(desired, status, extra=on_broker)


def _svg(dot_text: str) -> str:
    """Graphviz's SVG of the DOT text; one line when dot fails."""
    try:
        done = subprocess.run(["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True, check=False)
    except OSError as error:
        raise ProvisionerError(f"{NO_GRAPHVIZ} ({error.strerror or error})") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProvisionerError(f"Graphviz's dot could not draw the graph: {reason[:200]}")
    return done.stdout
