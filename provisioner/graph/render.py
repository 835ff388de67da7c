"""Pure: a Graph as Mermaid or Graphviz DOT text. Every name passes through an escape of its language."""

from __future__ import annotations

from provisioner.errors import one_line
from provisioner.graph.model import DIFFERS, MISSING, UNMANAGED, Edge, Graph, Node

MERMAID_SHAPES = {
    "exchange": ('{{"', '"}}'),
    "external": ('{{"', '"}}'),
    "queue": ('[("', '")]'),
    "task": ('(["', '"])'),
    "publisher": ('>"', '"]'),
}
MERMAID_ARROWS = {"binding": "-->", "dead_letter": "-.->", "retry": "-.->", "consumes": "==>", "publishes": "-->"}
# The colours DOT gives these edges (DOT_EDGES), as Mermaid linkStyle strokes.
EDGE_COLOURS = {"dead_letter": "#c62828", "retry": "#1565c0", "consumes": "#2e7d32"}
STATUS_CLASSES = {MISSING: "missing", DIFFERS: "differs", UNMANAGED: "unmanaged"}
STATUS_COLOURS = {MISSING: "#c62828", DIFFERS: "#ef6c00", UNMANAGED: "#6a1b9a"}
_MERMAID_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:/()+*=-")


def mermaid_text(text: str) -> str:
    """A label Mermaid shows as written: everything but plain characters as a numeric entity (#60;)."""
    return "".join(ch if ch in _MERMAID_SAFE else f"#{ord(ch)};" for ch in one_line(text))


def mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    for index, vhost in enumerate(graph.vhosts):
        lines.append(f'  subgraph v{index}["vhost {mermaid_text(repr(vhost))}"]')
        lines += [f"    {_mermaid_node(node)}" for node in graph.nodes if node.vhost == vhost]
        lines.append("  end")
    for edge in graph.edges:
        label = mermaid_text(_edge_label(edge))
        arrow = MERMAID_ARROWS[edge.style]
        lines.append(
            f'  {edge.source} {arrow}|"{label}"| {edge.target}' if label else f"  {edge.source} {arrow} {edge.target}"
        )
    lines += _mermaid_link_styles(graph.edges)
    for status, name in STATUS_CLASSES.items():
        colour = STATUS_COLOURS[status]
        lines.append(f"  classDef {name} stroke:{colour},stroke-width:3px,stroke-dasharray:6 3")
        marked = [node.id for node in graph.nodes if node.status == status]
        if marked:
            lines.append(f"  class {','.join(marked)} {name}")
    return "\n".join(lines) + "\n"


def _mermaid_link_styles(edges: tuple[Edge, ...]) -> list[str]:
    """``linkStyle`` lines colouring edges by their index, as DOT colours them: a status (--live) first."""
    by_style: dict[str, list[int]] = {}
    for index, edge in enumerate(edges):
        if edge.status:
            style = f"stroke:{STATUS_COLOURS[edge.status]},stroke-width:3px,color:{STATUS_COLOURS[edge.status]}"
        elif edge.style in EDGE_COLOURS:
            style = f"stroke:{EDGE_COLOURS[edge.style]},stroke-width:2px,color:{EDGE_COLOURS[edge.style]}"
        else:
            continue
        by_style.setdefault(style, []).append(index)
    return [f"  linkStyle {','.join(map(str, indexes))} {style}" for style, indexes in by_style.items()]


def _mermaid_node(node: Node) -> str:
    opening, closing = MERMAID_SHAPES[node.shape]
    return f"{node.id}{opening}{mermaid_text(_node_label(node))}{closing}"


def _node_label(node: Node) -> str:
    kind = {"external": "external exchange", "task": "", "publisher": ""}.get(node.shape, node.shape)
    text = f"{kind}: {node.label}" if kind else node.label
    return f"{text} [{node.status}]" if node.status else text


def _edge_label(edge: Edge) -> str:
    return f"{edge.label} [{edge.status}]" if edge.status else edge.label


def dot_string(text: str) -> str:
    """A DOT quoted string Graphviz shows as written: no escape sequence (\\N, \\n) and no entity (&lt;) survives."""
    escaped = one_line(text).replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return f'"{escaped}"'


DOT_SHAPES = {"exchange": "hexagon", "external": "hexagon", "queue": "cylinder", "task": "box", "publisher": "cds"}
DOT_EDGES = {
    "binding": "",
    "dead_letter": 'style=dashed, color="#c62828", fontcolor="#c62828"',
    "retry": 'style=dashed, color="#1565c0", fontcolor="#1565c0"',
    "consumes": 'style=bold, color="#2e7d32"',
    "publishes": "style=dotted",
}


def dot(graph: Graph) -> str:
    lines = [
        "digraph topology {",
        '  rankdir=LR; fontname="Helvetica"; node [fontname="Helvetica", fontsize=11]; '
        'edge [fontname="Helvetica", fontsize=9];',
    ]
    for index, vhost in enumerate(graph.vhosts):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f'    label={dot_string(f"vhost {vhost!r}")}; style=rounded; color="#90a4ae";')
        lines += [f"    {_dot_node(node)}" for node in graph.nodes if node.vhost == vhost]
        lines.append("  }")
    for edge in graph.edges:
        attributes = [f"label={dot_string(_edge_label(edge))}"] if _edge_label(edge) else []
        attributes += [DOT_EDGES[edge.style]] if DOT_EDGES[edge.style] else []
        if edge.status:
            attributes.append(f'color="{STATUS_COLOURS[edge.status]}", penwidth=2')
        lines.append(f"  {edge.source} -> {edge.target} [{', '.join(attributes)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(node: Node) -> str:
    attributes = [f"label={dot_string(_node_label(node))}", f"shape={DOT_SHAPES[node.shape]}"]
    if node.shape == "external":
        attributes.append("style=dashed")
    if node.status:
        attributes.append(f'color="{STATUS_COLOURS[node.status]}", penwidth=3, style=dashed')
    return f"{node.id} [{', '.join(attributes)}];"
