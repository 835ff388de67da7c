"""`provision graph`: Mermaid and DOT that survive hostile names, SVG opened in headless chromium, --live drift."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rabbit import AMQP_PORT, AUTH, HOST, MANAGEMENT_URL, api

from provisioner.cli import main
from provisioner.graph.render import dot_string, mermaid_text

REPO = Path(__file__).resolve().parent.parent.parent
SVG = "{http://www.w3.org/2000/svg}"
BROKER = [
    "--amqp-url",
    f"amqp://{AUTH[0]}:{AUTH[1]}@{HOST}:{AMQP_PORT}/",
    "--management-url",
    MANAGEMENT_URL.replace("://", f"://{AUTH[0]}:{AUTH[1]}@", 1),
]
HOSTILE = [
    'q"]; x [label="forged',
    "q\\N\\G\\n&lt;&amp;",
    "</text><script>alert(1)</script>",
    "q|-->n1{{x}}#quot;`md`",
    "end\nsubgraph",
]


def svg_texts(svg: str) -> list[str]:
    return [element.text or "" for element in ElementTree.fromstring(svg).iter(f"{SVG}text")]


def graph(*args: str) -> str:
    result = CliRunner().invoke(main, ["graph", *args])
    assert result.exit_code == 0, result.output
    return result.output


def hostile_topology(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.yaml"
    queues = {name: {"bindings": [{"exchange": "in", "routing_key": name}]} for name in HOSTILE if "\n" not in name}
    path.write_text(json.dumps({"version": 1, "vhost": "v", "exchanges": {"in": {"type": "direct"}}, "queues": queues}))
    return path


def test_hostile_names_are_drawn_exactly_as_written_in_svg(tmp_path: Path) -> None:
    svg = graph("--format", "svg", str(hostile_topology(tmp_path)))
    texts = svg_texts(svg)  # a well-formed document: no name closed a tag or opened a script
    for name in HOSTILE:
        if "\n" not in name:
            assert f"queue: {name} (classic)" in texts, (name, texts)
            assert name in texts  # the binding's key, the edge label
    assert not list(ElementTree.fromstring(svg).iter(f"{SVG}script"))


@settings(max_examples=300, deadline=None)
@given(name=st.text(st.characters(blacklist_categories=("Cs",))))
def test_every_name_escapes_in_mermaid_and_dot(name: str) -> None:
    label = mermaid_text(name)
    assert re.fullmatch(r"[A-Za-z0-9 _.,:/()+*=#;-]*", label), label  # nothing Mermaid reads as syntax
    assert re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label) == _one_line(name)
    quoted = dot_string(name)
    inner = quoted[1:-1]
    assert "\n" not in inner and re.fullmatch(r'(?:[^"\\]|\\\\|\\")*', inner), quoted  # one string, closed once


def _one_line(text: str) -> str:
    from provisioner.errors import one_line

    return one_line(text)


def test_shop_svg_opens_in_headless_chromium(tmp_path: Path) -> None:
    """The SVG of topologies/shop.yaml, laid out by a real browser: every label rendered, a screenshot taken."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "scripts/ensure-graph-tools.sh installs chromium (apt-get install -y chromium)"
    svg_path = tmp_path / "shop.svg"
    CliRunner().invoke(main, ["graph", "--format", "svg", "-o", str(svg_path), str(REPO / "topologies" / "shop.yaml")])
    svg = svg_path.read_text()
    assert "queue: billing (quorum)" in svg_texts(svg) and "task billing.tasks.charge" in svg_texts(svg)
    page = tmp_path / "page.html"
    page.write_text(
        "<!doctype html><html><body>" + svg.split("?>", 1)[1].split("-->", 2)[-1] + "<script>"
        "const texts=[...document.querySelectorAll('svg text')];"
        "const drawn=texts.filter(t=>t.getBBox().width>0).map(t=>t.textContent);"
        "document.body.setAttribute('data-drawn', JSON.stringify(drawn));"
        "</script></body></html>"
    )
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, check=True).stdout
    drawn = json.loads(re.search(r"data-drawn=\"([^\"]*)\"", dom).group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert set(svg_texts(svg)) <= set(drawn)  # every label laid out with a width by the browser
    assert {"queue: orders (quorum)", "retry after 4s", "foreign publisher", "dead letters [invoice.dead]"} <= set(
        drawn
    )
    screenshot = tmp_path / "shop.png"
    width, height = (
        int(float(v) * 4 / 3) + 40 for v in re.search(r'viewBox="[\d.]+ [\d.]+ ([\d.]+) ([\d.]+)"', svg).groups()
    )
    subprocess.run(
        [*base, f"--window-size={width},{height}", f"--screenshot={screenshot}", svg_path.as_uri()],
        capture_output=True,
        check=True,
    )
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a real picture, not a blank page


def test_svg_without_graphviz_says_how_to_install_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["graph", "--format", "svg", str(REPO / "topologies" / "shop.yaml")], env={"PATH": str(tmp_path)}
    )
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "apt-get install graphviz" in lines[0], result.output


LIVE = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
queues:
  orders: {{bindings: [{{exchange: orders, routing_key: "order.#"}}]}}
  {extra}
"""


def test_live_marks_what_is_missing_differs_or_extra(vhost_name: str, tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(LIVE.format(vhost=vhost_name, extra=""))
    assert CliRunner().invoke(main, ["apply", *BROKER, str(topology)]).exit_code == 0
    vhost = quote(vhost_name, safe="")
    api("PUT", f"queues/{vhost}/by-hand", json={"durable": True}).raise_for_status()
    api("DELETE", f"bindings/{vhost}/e/orders/q/orders/order.%23").raise_for_status()
    policy = {"pattern": "^orders$", "definition": {"max-length": 3}, "apply-to": "queues"}
    api("PUT", f"policies/{vhost}/by-hand", json=policy).raise_for_status()  # changes a managed queue
    topology.write_text(LIVE.format(vhost=vhost_name, extra="planned: {max_length: 10}"))
    text = graph("--live", "--format", "dot", *BROKER, str(topology))
    assert re.search(r'label="queue: planned \(classic\) \[missing on the broker\]".*color="#c62828"', text)
    assert re.search(r'label="queue: by-hand \(classic\) \[not in the topology\]"', text)
    assert 'label="order.# [missing on the broker]"' in text
    assert 'label="queue: orders (classic) [differs on the broker]"' in text  # the policy by hand changes it
    assert 'n1 [label="exchange: orders (topic)", shape=hexagon];' in text  # as the topology says: unmarked
    assert "[" not in graph("--format", "dot", str(topology)).split("label=")[1].split('"')[1]  # no --live: no marks


@pytest.mark.parametrize("output_format", ["mermaid", "dot"])
def test_shop_picture_holds_every_path(output_format: str) -> None:
    text = graph("--format", output_format, str(REPO / "topologies" / "shop.yaml"))
    for label in (
        "billing.retry.4s",
        "dead letters",
        "retry after 4s",
        "task billing.tasks.charge",
        "foreign publisher",
    ):
        assert (mermaid_text(label) if output_format == "mermaid" else label) in text


def test_the_docs_picture_is_the_graph_of_shop_yaml() -> None:
    """docs/shop.svg (the picture of docs/graph.md) draws what `provision graph` draws of topologies/shop.yaml now."""
    fresh = graph("--format", "svg", str(REPO / "topologies" / "shop.yaml"))
    assert sorted(svg_texts((REPO / "docs" / "shop.svg").read_text())) == sorted(svg_texts(fresh))


def test_mermaid_colours_the_edges_dot_colours() -> None:
    """Dead letters red, retries blue, consumers green, by each edge's index as Mermaid counts links."""
    text = graph("--format", "mermaid", str(REPO / "topologies" / "shop.yaml"))
    edges = [line for line in text.splitlines() if re.match(r"  n\d+ (-->|-\.->|==>)", line)]
    styles = {}
    for line in text.splitlines():
        if line.startswith("  linkStyle "):
            indexes, style = line.split()[1:3]
            styles |= {int(index): style for index in indexes.split(",")}
    assert max(styles) < len(edges)
    for index, line in enumerate(edges):
        if "dead letters" in line:
            assert styles[index].startswith("stroke:#c62828"), line
        elif "retry after" in line:
            assert styles[index].startswith("stroke:#1565c0"), line
        elif " ==> " in line or " ==>|" in line:
            assert styles[index].startswith("stroke:#2e7d32"), line
        else:
            assert index not in styles, line
