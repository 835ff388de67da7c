"""Load topology files into the expanded model: read -> interpolate -> schema -> expand -> meaning checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import Problem, TopologyInvalid
from provisioner.profile import phase
from provisioner.retain import retain
from provisioner.topology.documents import Document, collector_paused, read_document, vhost_bodies
from provisioner.topology.schema import schema_problems, wants_text
from provisioner.topology.text_guard import text_problems
from provisioner.topology.variables import interpolate

if TYPE_CHECKING:
    from provisioner.topology.model import Topology


def load(
    files: Iterable[str | Path],
    environ: Mapping[str, str] | None = None,
    warnings: list[Problem] | None = None,
    on_vhosts: Callable[[list[str]], None] | None = None,
) -> Topology:
    """Load and validate topology files as one topology; raise TopologyInvalid with every problem.

    Findings of severity ``warning`` never fail the load; they are appended to ``warnings`` when given.
    ``on_vhosts`` hears the vhost names as soon as the files passed the schema,
    before expansion and the meaning checks, so a plan can start reading the
    broker while the rest is checked.
    """
    with collector_paused():  # tens of thousands of objects and no cycles: each collection would walk them all
        return _load(files, environ, warnings, on_vhosts)


def _load(
    files: Iterable[str | Path],
    environ: Mapping[str, str] | None,
    warnings: list[Problem] | None,
    on_vhosts: Callable[[list[str]], None] | None,
) -> Topology:
    documents: list[Document] = []
    problems: list[Problem] = []
    for file in files:
        try:
            with phase("yaml"):
                document = read_document(file)
                found = interpolate(document, environ, wants_text)
        except TopologyInvalid as error:
            problems.extend(error.problems)
            continue
        if found:
            pass  # an unset variable would only repeat itself as a type error
        elif not isinstance(document.data, dict):
            found.append(document.problem([], "a topology is a mapping with at least 'version: 1'"))
        elif text_found := text_problems(document):
            found.extend(text_found)  # the schema would only trip over the same text (or recurse too deep)
        else:
            with phase("schema"):
                found.extend(schema_problems(document))
        problems.extend(found)
        if not found:
            documents.append(document)
    if problems:
        raise TopologyInvalid(problems)
    if on_vhosts is not None:
        on_vhosts(list(dict.fromkeys(vhost for document in documents for vhost, _, _ in vhost_bodies(document))))
    # Imported only now, while a plan's read is already with the broker (the model and its checks: ~50 ms).
    from provisioner.topology.checks import meaning_problems
    from provisioner.topology.expand import expand_documents

    with phase("expand"):
        topology, origins, problems = expand_documents(documents)
    with phase("checks"):
        findings = meaning_problems(topology, origins)
    for problem in findings:
        if problem.severity == "warning":
            if warnings is not None:
                warnings.append(problem)
        else:
            problems.append(problem)
    if problems:
        raise TopologyInvalid(problems)
    retain(documents, origins, topology)  # the CLI's process ends without freeing them (retain.py)
    return topology
