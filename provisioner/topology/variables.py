"""``${VAR}`` / ``${VAR:-default}`` in a loaded document's string values, from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from provisioner.errors import Problem
from provisioner.topology.documents import Document

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$\$")


def interpolate(
    document: Document,
    environ: Mapping[str, str] | None = None,
    wants_text: Callable[[list[Any]], bool] | None = None,
) -> list[Problem]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string value, in place.

    ``$$`` stands for a literal ``$``. A variable that is unset and has no
    default is a problem at the line that uses it. Keys are not interpolated:
    names of objects stay greppable. A value that is only ``${VAR}`` takes the
    YAML type of what it expands to, unless ``wants_text(path)`` says the place
    takes only strings (``vhost: ${VH}`` with VH=007 stays "007").
    """
    problems: list[Problem] = []
    if document.text and "$" not in document.text and "\\" not in document.text:
        return problems  # no string can hold a $: none is written, and no escape (\x24) makes one
    env = os.environ if environ is None else environ

    def substitute(text: str, path: list[Any]) -> str:
        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value is not None and not _utf8(value):
                problems.append(document.problem(path, f"environment variable {name} is not UTF-8 text"))
                return match.group(0)
            if value is None or (value == "" and ":-" in match.group(0)):
                if default is None:
                    problems.append(document.problem(path, f"environment variable {name} is not set"))
                    return match.group(0)
                return default
            return value

        return _VARIABLE.sub(one, text)

    stack: list[tuple[Any, list[Any]]] = [(document.data, [])]
    while stack:  # iterative: no nesting depth can exhaust the stack (text_guard.py refuses the deep ones)
        node, path = stack.pop()
        items: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        for key, value in items:
            if isinstance(value, str) and "$" in value:
                result = substitute(value, [*path, key])
                whole = _VARIABLE.fullmatch(value.strip()) is not None and value.strip() != "$$"
                keep = not whole or (wants_text is not None and wants_text([*path, key]))
                node[key] = result if keep else _typed(result)
            else:
                stack.append((value, [*path, key]))
    return problems


def _utf8(text: str) -> bool:
    """Whether ``text`` is UTF-8 (the environment keeps other bytes as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_TYPED_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"})


def _typed(text: str) -> Any:
    """The YAML type of an expanded value (``5000`` is an int, ``no`` a boolean); anything else stays text."""
    node = yaml.ScalarNode(yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False)), text)
    if node.tag not in _TYPED_TAGS:
        return text
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except (yaml.YAMLError, ValueError):
        return text
