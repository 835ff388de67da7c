"""`provision export`: a broker's definitions (live or a file) -> a reviewed topology document.

source (read only) -> document (pure inverse of expand) -> celery_app (tasks) ->
emit (YAML with comments), then the written text is loaded as `validate` loads
it, so what validate would refuse is marked at its object.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from provisioner.errors import Problem, ProvisionerError, TopologyInvalid
from provisioner.export.accounts import export_permissions, export_users
from provisioner.export.celery_app import app_vhost, celery_sections
from provisioner.export.document import Note, VhostExport, export_vhost
from provisioner.export.emit import emit
from provisioner.export.source import Definitions
from provisioner.export.unsupported import inexpressible
from provisioner.export.vhost_settings import export_vhost_settings
from provisioner.parameters.export import (
    PLACEHOLDER_VALUE,
    Exported,
    export_global_parameters,
    export_vhost_parameters,
)
from provisioner.topology.files import load

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "topology.schema.json"

VHOST_SECTIONS = ("exchanges", "queues", "policies")


@dataclass(frozen=True)
class Export:
    """The document's text and what the CLI says about it on stderr."""

    text: str
    warnings: list[str] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line in the written text, message)
    vhosts: int = 0
    skipped: int = 0  # objects of Celery's, the broker's or the tool's own


def export_topology(
    definitions: Definitions, app: Any | None = None, accounts: bool = False, output: str = "-"
) -> Export:
    """The topology of every vhost in ``definitions``; with ``app``, its tasks and default queue too.

    With ``accounts``, the users who hold permissions there, the permissions and
    topic permissions, each password a ``${VAR}`` placeholder. ``output`` (the
    file to be written, - for standard output) places the ``$schema`` reference.
    """
    if not definitions.vhosts:
        raise ProvisionerError(f"nothing to export: {definitions.source} holds no vhost")
    exported = {name: export_vhost(name, objects) for name, objects in definitions.vhosts.items()}
    placeholders = _with_parameters(definitions, exported, accounts)
    single = len(exported) == 1
    celery = _celery(app, exported, single) if app is not None else None  # may add queues Celery declares itself
    document: dict[str, Any] = {"version": 1}
    if single:
        (name, only), *_ = exported.items()
        document.update({"vhost": name, **only.body})
    else:
        document["vhosts"] = {name: vhost.body for name, vhost in exported.items()}
    notes = [(_in_document(note.path, name, single), note) for name, vhost in exported.items() for note in vhost.notes]
    for name, section, key, message in definitions.duplicates:
        notes.append((_in_document((section, key), name, single), Note((section, key), message)))
    if celery is not None:
        sections, celery_notes = celery
        document.update(sections)
        notes.extend(celery_notes)
    cluster = export_global_parameters(definitions.broker.get("global_parameters") or [], frozenset(placeholders))
    if _whole_broker(definitions):
        document.update(cluster.sections)
        notes += [(path, Note(path, message)) for path, message in cluster.notes]
        placeholders |= cluster.placeholders
    if accounts and not definitions.unread:
        users = export_users(definitions.broker, set(exported), _whole_broker(definitions), frozenset(placeholders))
        document.update(users.sections)
        notes += [(path, Note(path, message)) for path, message in users.notes]
        placeholders |= users.placeholders
    header = _header(definitions, [note for path, note in notes if not _has(document, path)], accounts, output)
    text, problems = _annotated(document, header, notes, dict.fromkeys(placeholders, PLACEHOLDER_VALUE))
    left_out = inexpressible(definitions, accounts)
    warnings = [f"left out: {line}" for line in left_out]
    if definitions.unread:
        warnings.append(f"users and permissions were not read: {definitions.unread}")
    warnings += [note.message for _, note in notes if not note.problem]
    return Export(text, warnings, problems, len(exported), sum(v.skipped for v in exported.values()))


def _whole_broker(definitions: Definitions) -> bool:
    """Cluster-wide objects belong in the export only when it holds every vhost."""
    return not definitions.vhosts or len(definitions.vhosts) == len(definitions.broker.get("vhosts") or ())


def _with_parameters(definitions: Definitions, exported: dict[str, VhostExport], accounts: bool) -> set[str]:
    """Each vhost's operator policies, federation upstreams and shovels into its body; the placeholders written."""
    placeholders: set[str] = set()
    for name, vhost in exported.items():
        permissions = export_permissions(definitions.broker, name) if accounts else Exported()
        settings = export_vhost_settings(definitions.broker, definitions.vhosts[name], name)
        parameters = export_vhost_parameters(definitions.vhosts[name], frozenset(placeholders))
        for found in (settings, parameters, permissions):
            vhost.body.update(found.sections)
            vhost.notes += [Note(path, message) for path, message in found.notes]
            placeholders |= found.placeholders
    return placeholders


def _in_document(path: tuple[Any, ...], vhost: str, single: bool) -> tuple[Any, ...]:
    """A path inside a vhost's body as a path in the document; () stays () (the header)."""
    return ((() if single else ("vhosts", vhost)) + path) if path else ()


def _annotated(
    document: dict[str, Any],
    header: list[str],
    notes: list[tuple[tuple[Any, ...], Note]],
    environ: dict[str, str],
) -> tuple[str, list[tuple[int, str]]]:
    """The text with every note at its object, and what `validate` would refuse marked too; (line, problem)s."""
    comments: dict[tuple[Any, ...], list[str]] = {}
    for path, note in notes:
        if _has(document, path):
            comments.setdefault(path, []).append(("PROBLEM: " if note.problem else "NOTE: ") + note.message)
    draft, key_lines = emit(document, header, comments)
    marked = {path for path, note in notes if note.problem}
    added = False
    found = list(notes)
    for path, message, problem in _refused(draft, key_lines, environ):
        if path in marked:
            continue  # the export said it already, in its own words
        added = True
        label = "PROBLEM: " if problem else "NOTE: "
        if path:
            comments.setdefault(path, []).append(label + message)
        else:
            header.append(label + message)
        found.append((path, Note(path, message, problem)))
    text = draft
    if added:  # written again with validate's findings at their objects; most exports have none
        text, key_lines = emit(document, header, comments)
    return text, [(key_lines.get(path, 1), note.message) for path, note in found if note.problem]


def _celery(
    app: Any, exported: dict[str, VhostExport], single: bool
) -> tuple[dict[str, Any], list[tuple[tuple[Any, ...], Note]]]:
    """``tasks`` and ``celery`` for the vhost the app's broker URL names (or the only one), and their notes."""
    vhost = app_vhost(app)
    if vhost not in exported:
        vhost = next(iter(exported)) if single else vhost
    if vhost not in exported:
        return {}, [((), Note((), f"the app's vhost {vhost!r} is not exported; its tasks are left out", True))]
    tasks, celery, notes = celery_sections(app, exported[vhost])
    sections: dict[str, Any] = {"tasks": tasks} if tasks else {}
    default_vhost = "/" if "/" in exported else sorted(exported)[0]
    sections["celery"] = celery if vhost == default_vhost else {**celery, "vhost": vhost}
    placed = []
    for note in notes:
        inside = note.path and note.path[0] in VHOST_SECTIONS
        placed.append((((() if single else ("vhosts", vhost)) + note.path) if inside else note.path, note))
    return sections, placed


def schema_reference(output: str) -> str:
    """The installed JSON Schema, relative to the folder of ``output`` (the working directory for -).

    An editor resolves a relative ``$schema`` against the file, so the reference
    works offline and matches the installed version; another drive gets a file: URI.
    """
    base = os.path.abspath(os.path.dirname(output) if output != "-" else os.curdir)
    try:
        return PurePath(os.path.relpath(SCHEMA_FILE, base)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return SCHEMA_FILE.as_uri()


def _header(definitions: Definitions, loose: list[Note], accounts: bool, output: str) -> list[str]:
    """The schema line, where the file comes from, what it leaves out, and notes that have no object."""
    lines = [
        f"yaml-language-server: $schema={schema_reference(output)}",
        "",
        f"Exported by `provision export` from {definitions.source}.",
        "Review it, commit it, and check it with `provision plan` (docs/adoption.md: Adopting an existing broker).",
    ]
    unexpressed = inexpressible(definitions, accounts)
    if unexpressed or definitions.unread:
        lines += ["", "Left out (left as they are on the broker, not managed):"]
        lines += [f"  - {line}" for line in unexpressed]
        if definitions.unread:
            lines.append(f"  - users and permissions were not read: {definitions.unread}")
    if loose:
        lines.append("")
        lines += [("PROBLEM: " if note.problem else "NOTE: ") + note.message for note in loose]
    return lines


def _has(document: dict[str, Any], path: tuple[Any, ...]) -> bool:
    node: Any = document
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return bool(path)


def _refused(
    text: str, key_lines: dict[tuple[Any, ...], int], environ: dict[str, str]
) -> list[tuple[tuple[Any, ...], str, bool]]:
    """What `validate` says about ``text``: (object, message, whether it refuses it) for each finding."""
    found: list[Problem] = []
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "export.yaml"
        file.write_text(text, encoding="utf-8")
        try:
            load([file], environ=environ, warnings=found)  # the placeholders the export wrote are set
        except TopologyInvalid as error:
            found.extend(error.problems)
    return [(_object_at(p.line, key_lines), p.message, p.severity != "warning") for p in found]


def _object_at(line: int, key_lines: dict[tuple[Any, ...], int]) -> tuple[Any, ...]:
    """The object (an exchange, queue, policy or task entry) whose text holds ``line``."""
    objects = {
        path: at
        for path, at in key_lines.items()
        if (len(path) == 2 and path[0] in ("tasks", *VHOST_SECTIONS))
        or (len(path) == 4 and path[0] == "vhosts" and path[2] in VHOST_SECTIONS)
        or path == ("celery",)
    }
    before = [(at, path) for path, at in objects.items() if at <= line]
    return max(before)[1] if before else ()
