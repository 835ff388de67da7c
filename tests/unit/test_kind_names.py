"""Kinds are compared by their registry's names, never by string literals, outside provisioner/kinds/.

A comparison (``==``, ``!=``, ``in``, ``not in``) with a string literal equal to
a registered kind name (``"queue"``, or a key tuple ``("queue", name)``) fails
here: write ``QUEUE.name`` (provisioner/kinds/queue.py) so a renamed or new kind
is found by the type checker and grep, not by a silent mismatch. Two shapes are
other vocabularies that happen to share a word, and pass: a binding's AMQP
``destination_type`` (``"queue"`` or ``"exchange"``), and a key looked up in a
mapping (``"vhost" in data``). NOT_KINDS lists the few other operands, by module.

A key built from a literal (``("queue", vhost, name)``) is a comparison made
later, by a dict or a set: it fails too (NOT_KEYS lists the tuples that are not
objects' keys). The model's own keys use their class's ``kind``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from provisioner.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "provisioner"
COMPARING = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)

# (module, operand as ast.unparse writes it) -> why its literal is not a kind name.
NOT_KINDS = {
    ("provisioner/export/document.py", "pair.via"): "a dead-letter route is set via arguments or a policy",
    ("provisioner/topology/expand.py", "dead_letter.via"): "a dead-letter route is set via arguments or a policy",
    ("provisioner/topology/introduced.py", "entry.place"): "where a late setting is written: argument or policy",
    ("provisioner/topology/schema.py", "field"): "the topology file's field named exchange",
    ("provisioner/topology/schema.py", "path[-2]"): "the topology file's table named policy",
    ("provisioner/export/source.py", "k"): "a definitions item's field named vhost",
    ("provisioner/export/source.py", "row.get('component')"): "the definitions document's parameter component",
}
# (module, tuple as ast.unparse writes it) -> why it is not an object's key.
NOT_KEYS = {
    ("provisioner/export/document.py", "('exchange', x.name)"): "(destination_type, destination) of bindings",
    ("provisioner/export/document.py", "('queue', queue.name)"): "(destination_type, destination) of bindings",
    ("provisioner/drift.py", "('policy', applied.policy)"): "the label printed before a policy's name",
}


def _literals(node: ast.expr) -> list[str]:
    """The string literals of an operand: itself, or the items of a literal tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _destination_type(node: ast.expr) -> bool:
    """``b.destination_type``, ``row["destination_type"]``, ``row.get("destination_type")``: AMQP's word."""
    if isinstance(node, ast.Name):
        return node.id == "destination_type"
    if isinstance(node, ast.Attribute):
        return node.attr == "destination_type"
    if isinstance(node, ast.Subscript):
        return _literals(node.slice) == ["destination_type"]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and _literals(node.args[0]) == ["destination_type"]
    return False


def _kind_name_comparisons(path: Path, module: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for index, op in enumerate(node.ops):
            if not isinstance(op, COMPARING):
                continue
            left, right = operands[index], operands[index + 1]
            if isinstance(op, (ast.In, ast.NotIn)) and isinstance(left, ast.Constant):
                continue  # a key looked up in a mapping
            for literal, other in ((left, right), (right, left)):
                named = [value for value in _literals(literal) if value in KINDS]
                if not named or _destination_type(other) or (module, ast.unparse(other)) in NOT_KINDS:
                    continue
                yield f"{module}:{node.lineno}: {ast.unparse(node)}"
                break


def _key_tuples(path: Path, module: str) -> Iterator[str]:
    """Tuples whose first item is a kind-name literal and that hold a computed item: a key built by hand."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        first = node.elts[0] if isinstance(node, ast.Tuple) and node.elts else None
        if not (isinstance(first, ast.Constant) and first.value in KINDS):
            continue
        if all(isinstance(e, ast.Constant) for e in node.elts) or (module, ast.unparse(node)) in NOT_KEYS:
            continue
        yield f"{module}:{node.lineno}: {ast.unparse(node)}"


def kind_name_comparisons() -> list[str]:
    """Every comparison of a kind-name literal outside provisioner/kinds/."""
    return [
        found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "kinds"
        for check in (_kind_name_comparisons, _key_tuples)
        for found in check(path, path.relative_to(ROOT).as_posix())
    ]


def test_no_kind_name_is_compared_as_a_string_literal() -> None:
    found = kind_name_comparisons()
    assert not found, "compare with the registry's names (e.g. QUEUE.name):\n" + "\n".join(found)


def test_the_check_sees_each_shape(tmp_path: Path) -> None:
    """The shapes the rule is about are found; AMQP's destination_type and a mapping's key are not."""
    source = tmp_path / "sample.py"
    source.write_text(
        "a = change.kind == 'queue'\n"
        "b = kind in ('exchange', 'queue')\n"
        "c = key[0] != 'policy'\n"
        "d = ('queue', name) in wanted\n"
        "e = binding.destination_type == 'queue'\n"
        "f = 'vhost' in data\n"
        "g = row.get('destination_type') == 'exchange'\n"
        "h = wanted[('queue', vhost, name)]\n"
        "i = ('queue', 'exchange')\n",
        encoding="utf-8",
    )
    lines = [found.split(":")[1] for found in _kind_name_comparisons(source, "sample.py")]
    assert lines == ["1", "2", "3", "4"]
    keys = [found.split(":")[1] for found in _key_tuples(source, "sample.py")]
    assert keys == ["4", "8"]
