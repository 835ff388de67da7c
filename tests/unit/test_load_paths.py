"""The two ways a file is read: plain objects by libyaml when nothing needs guarding, marks only on demand."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import TopologyInvalid
from provisioner.topology.documents import Mark, MarkedDict, read_document


def written(tmp_path: Path, text: str) -> str:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    return str(path)


def test_a_file_without_anchors_is_read_into_plain_objects_and_still_located(tmp_path: Path) -> None:
    document = read_document(written(tmp_path, "version: 1\nqueues:\n  q:\n    durable: maybe\n"))
    assert type(document.data) is dict  # no marks were built to read it
    assert document.locate(["queues", "q", "durable"]) == Mark(4, 14)  # built when asked for
    assert document.locate_key(["queues", "q"]) == Mark(3, 3)


def test_a_file_with_anchors_takes_the_guarded_loader(tmp_path: Path) -> None:
    document = read_document(written(tmp_path, "version: 1\nx: &a {b: 1}\ny: *a\n"))
    assert isinstance(document.data, MarkedDict)
    assert document.data["y"] == {"b": 1}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("version: 1\nqueues: {}\nqueues: {}\n", "duplicate key 'queues' (first at line 2)"),
        ("version: 1\nyes: 1\n", "key 'yes' is read as a boolean"),
        ("version: 1\nq: *nowhere\n", "YAML:"),
    ],
)
def test_what_the_plain_reader_cannot_judge_is_explained_by_the_guarded_one(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(TopologyInvalid) as raised:
        read_document(written(tmp_path, text))
    assert words in str(raised.value.problems[0])


def test_the_plain_reader_types_scalars_as_yaml_does(tmp_path: Path) -> None:
    text = "version: 1\nplain: {n: 5000, f: 1.5, b: no, z: ~, s: '007', d: 2024-01-01, e: ''}\n"
    document = read_document(written(tmp_path, text))
    assert type(document.data) is dict
    plain = document.data["plain"]
    assert (plain["n"], plain["f"], plain["b"], plain["z"], plain["s"], plain["e"]) == (
        5000,
        1.5,
        False,
        None,
        "007",
        "",
    )
    assert str(plain["d"]) == "2024-01-01"


def test_an_explicit_tag_takes_the_guarded_loader(tmp_path: Path) -> None:
    document = read_document(written(tmp_path, "version: 1\nq: !!str 5\n"))
    assert isinstance(document.data, MarkedDict)
    assert document.data["q"] == "5"


def test_several_documents_are_still_refused(tmp_path: Path) -> None:
    with pytest.raises(TopologyInvalid) as raised:
        read_document(written(tmp_path, "version: 1\n---\nversion: 1\n"))
    assert "several YAML documents in one file" in str(raised.value.problems[0])
