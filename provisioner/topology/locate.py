"""Where each object of a topology is written (file, line, column), for annotations on a pull request's diff."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provisioner.errors import TopologyInvalid
from provisioner.topology.documents import Document, read_document
from provisioner.topology.expand import expand_documents
from provisioner.topology.model import Key
from provisioner.topology.schema import wants_text
from provisioner.topology.variables import interpolate


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    column: int


def locations(files: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[Key, Location]:
    """Each object's key -> where it (or the object that generates it, for dead-letter pairs) is written."""
    documents: list[Document] = []
    for file in files:
        try:
            document = read_document(file)
        except TopologyInvalid:
            continue  # the topology loaded before this is asked: a file gone since has no place to point at
        if not interpolate(document, environ, wants_text):
            documents.append(document)
    _, origins, _ = expand_documents(documents)
    found: dict[Key, Location] = {}
    for key, origin in origins.items():
        try:
            mark = origin.document.locate_key(origin.path)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
        found[key] = Location(origin.document.file, mark.line, mark.column)
    return found
