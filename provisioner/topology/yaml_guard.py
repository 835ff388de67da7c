"""The guard over a YAML node graph: duplicate keys, keys that are not strings, alias cycles and alias bombs."""

from __future__ import annotations

import json
from typing import Any

import yaml

from provisioner.topology.yaml_marks import Mark, _mark, _MarkingLoader

ALIAS_BUDGET = 100_000  # values that aliases may add beyond those written out
_CAP = 10**12  # sizes stop growing here, so an alias bomb never makes huge integers

_KEY_TYPES = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:binary": "binary data",
}
_STRING_KEY_TAGS = frozenset({"tag:yaml.org,2002:str", "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})


class _Structure:
    """One pass over the node graph, each node once however many aliases point at it.

    Finds duplicate keys (PyYAML would silently keep the last), keys YAML reads as
    something other than a string (``yes``, ``~``, ``007``), aliases that refer to
    themselves, and alias expansions beyond ALIAS_BUDGET (the "billion laughs").
    """

    def __init__(self, loader: _MarkingLoader) -> None:
        self.loader = loader
        self.sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
        self.found: list[tuple[list[Any], Mark, str]] = []

    def problems(self, root: yaml.Node | None) -> list[tuple[list[Any], Mark, str]]:
        if root is None:
            return []
        total = self.size(root, [])
        if not self.found and total - len(self.sizes) > ALIAS_BUDGET:
            self.found.append(
                (
                    [],
                    _mark(root),
                    f"YAML aliases expand this file by more than {ALIAS_BUDGET:,} values "
                    "(an alias bomb?); write the values out",
                )
            )
        return self.found

    def size(self, node: yaml.Node, path: list[Any]) -> int:
        known = self.sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise yaml.MarkedYAMLError(None, None, "an alias refers to itself", node.start_mark)
            return known
        self.sizes[id(node)] = -1  # in progress: meeting it again is a cycle
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += self.mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                total += self.size(item, [*path, index])
        total = min(total, _CAP)
        self.sizes[id(node)] = total
        return total

    def mapping(self, node: yaml.MappingNode, path: list[Any]) -> int:
        total = 0
        first: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key_node.tag not in _STRING_KEY_TAGS:
                self.found.append(([*path, key], _mark(key_node), self.key_problem(key_node)))
            elif key is not None and key in first:
                message = f"duplicate key {key!r} (first at line {first[key].line})"
                self.found.append(([*path, key], _mark(key_node), message))
            elif key is not None:
                first[key] = _mark(key_node)
            total += self.size(key_node, path) + self.size(value_node, [*path, key])
        return total

    def key_problem(self, key_node: yaml.ScalarNode) -> str:
        what = _KEY_TYPES.get(key_node.tag, "not a string")
        try:
            value = self.loader.construct_object(key_node)
        except (yaml.YAMLError, ValueError, OverflowError):
            value = None
        shown = json.dumps(value, default=str).strip('"')  # true, false, null, 7, 2024-01-01
        detail = "" if value is None else f" ({shown})"
        return f"key {key_node.value!r} is read as {what}{detail}; quote it"
