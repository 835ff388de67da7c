"""The parameter kinds a topology declares, and which it owns where (what plan may prune)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provisioner.errors import Problem
from provisioner.parameters import KINDS
from provisioner.parameters.core import Key, Parameter, Parameters

if TYPE_CHECKING:  # only a type here: importing provisioner.topology would import this module back
    from provisioner.topology.documents import Document

EXCLUSIVE = "parameters_exclusive"


@dataclass
class ParametersReader:
    """Collects every document's parameter kinds; the same object twice is a problem at its line."""

    problems: list[Problem] = field(default_factory=list)
    objects: dict[Key, Parameter] = field(default_factory=dict)
    owned: set[tuple[str, str]] = field(default_factory=set)
    exclusive: bool = False

    def add_document(self, document: Document, bodies: list[tuple[str, dict[str, Any], tuple[Any, ...]]]) -> None:
        data = document.data
        for kind in KINDS:
            if kind.cluster_wide and kind.file_key in data:
                self._add_all(document, kind, "", data[kind.file_key], [kind.file_key])
            if not kind.cluster_wide and "vhosts" in data and kind.file_key in data:
                message = f"'{kind.file_key}' cannot stand beside 'vhosts'; move it under a vhost"
                self.problems.append(document.problem([kind.file_key], message, at_key=True))
        self.exclusive = self.exclusive or bool(data.get(EXCLUSIVE))
        for vhost, body, base in bodies:
            for kind in KINDS:
                if not kind.cluster_wide and kind.file_key in body:
                    self._add_all(document, kind, vhost, body[kind.file_key], [*base, kind.file_key])

    def _add_all(self, document: Document, kind: Any, vhost: str, specs: Any, path: list[Any]) -> None:
        self.owned.add((vhost, kind.kind))
        for name, spec in (specs or {}).items():
            refused = kind.check(spec)
            if refused:
                self.problems.append(document.problem([*path, name], f"{kind.kind} {name!r}: {refused}", at_key=True))
                continue
            parameter = Parameter(kind.kind, vhost, name, kind.from_file(spec))
            if parameter.key in self.objects:
                where = "" if kind.cluster_wide else f" in vhost {vhost!r}"
                message = f"{kind.kind.replace('_', ' ')} {name!r}{where} is defined twice"
                self.problems.append(document.problem([*path, name], message, at_key=True))
                continue
            self.objects[parameter.key] = parameter

    def parameters(self) -> Parameters:
        if self.exclusive:
            self.owned.update(("", k.kind) for k in KINDS if k.cluster_wide)
        objects = tuple(sorted(self.objects.values(), key=lambda p: p.key))
        return Parameters(objects, frozenset(self.owned), self.exclusive)
