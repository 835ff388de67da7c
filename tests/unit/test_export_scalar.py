"""export's scalars: the plain-word shortcut writes exactly what PyYAML's safe_dump writes."""

from __future__ import annotations

import random
import string

import yaml

from provisioner.export.emit import scalar

# YAML 1.1 words its resolver reads as booleans, nulls, numbers or timestamps, and ordinary names.
SPECIAL = [
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "null",
    "Null",
    "NULL",
    "y",
    "Y",
    "n",
    "N",
    "e",
    "E",
    "e1",
    "E5",
    "inf",
    "nan",
    "NaN",
    "Inf",
    "x",
    "q00001",
    "jobs.1",
    "a-b",
    "a.b.c",
    "a_b",
    "Ab-",
    "a--",
    "a..",
    "a.",
    "x1e3",
    "a1_000",
    "b0x1F",
    "z9",
    "T",
    "F",
    "o",
    "O",
    "c.dq2",
    "celeryev",
    "a-1.5e3",
    "celery.pidbox",
]


def _safe_dump(value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True)
    return text.removesuffix("\n...\n").rstrip("\n")


def test_words_are_written_as_safe_dump_writes_them() -> None:
    alphabet = string.ascii_letters + string.digits + "_.-"
    generator = random.Random(29)
    words = list(SPECIAL) + [
        generator.choice(string.ascii_letters) + "".join(generator.choices(alphabet, k=generator.randint(0, 7)))
        for _ in range(5000)
    ]
    assert [w for w in words if scalar(w) != _safe_dump(w)] == []
    assert scalar("yes") == "'yes'" and scalar("q00001") == "q00001"


def test_booleans_and_integers_are_written_as_safe_dump_writes_them() -> None:
    values = [True, False, 0, 1, -1, 7, -42, 2**31, -(2**63), 10**30, *range(-300, 300)]
    assert [v for v in values if scalar(v) != _safe_dump(v)] == []
