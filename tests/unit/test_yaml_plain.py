"""The fast reader (yaml_plain.py) reads scalars as PyYAML's safe loader does, or leaves the file to the guarded one."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.topology.yaml_plain import _plain_data

# Spellings where YAML 1.1's implicit types start, and near misses of them.
SCALARS = [
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "n",
    "true",
    "False",
    "~",
    "null",
    "Null",
    "",
    "0",
    "-0",
    "+1",
    "1_000",
    "0x1F",
    "0o17",
    "017",
    "0b101",
    "1:30",
    "1:30.5",
    "190:20:30",
    "1.5",
    "1.5e+3",
    "1e3",
    ".5",
    "-.5",
    ".inf",
    "-.Inf",
    "+.INF",
    ".NaN",
    ".nan",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "=",
    "<<",
    "'quoted'",
    '"double"',
    '"\\x24{X}"',
    "plain words",
    "topic",
    "type",
    "jobs.0",
    "q00001",
    "tRue",
    "nULL",
    "0.",
    "1__0",
    "-",
    "+",
    ".",
    "0:",
    "O",
    "o",
    "Y",
]

SCALAR = st.sampled_from(SCALARS)
KEY = st.sampled_from(["a", "type", "queues", "b", "dead_letter", "routing_key"])


def _text(value: object, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        return "".join(f"{pad}{key}:\n{_text(item, indent + 2)}" for key, item in value.items()) or f"{pad}{{}}\n"
    if isinstance(value, list):
        return "".join(f"{pad}-\n{_text(item, indent + 2)}" for item in value) or f"{pad}[]\n"
    return f"{pad}{value}\n"


TREES = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEY, TREES, min_size=1, max_size=4))
def test_the_fast_reader_agrees_with_the_safe_loader(tree: dict[str, object]) -> None:
    text = _text(tree)
    found = _plain_data(text)
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:  # "=" is YAML's value type, which no safe loader builds
        assert found is None, text
        return
    if found is not None:  # None: left to the guarded loader (an unusual key, say)
        assert found == expected or (found != found and expected != expected), text
        assert repr(found) == repr(expected), text  # the same types too: 1 is not True, 1.0 is not 1


def test_it_reads_the_common_file_itself() -> None:
    text = "version: 1\nqueues:\n  q: {durable: no, max_length: 1_000, bindings: [{exchange: x, routing_key: '1'}]}\n"
    assert _plain_data(text) == {
        "version": 1,
        "queues": {"q": {"durable": False, "max_length": 1000, "bindings": [{"exchange": "x", "routing_key": "1"}]}},
    }
