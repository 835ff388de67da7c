"""`validate --format github` and `drift --format github`: problems and drift as GitHub workflow annotations."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from provisioner.cli.output import EXIT_ERROR, say
from provisioner.errors import Problem, TopologyInvalid, one_line

if TYPE_CHECKING:
    from provisioner.plan import Plan


def validate_annotated(files: tuple[str, ...], combined: bool, strict: bool) -> None:
    """Validate as `validate` does; each problem (and warning) is one annotation on stdout, at its line."""
    from provisioner.formats.github import problem_annotations
    from provisioner.topology import load

    groups = [list(files)] if combined else [[file] for file in files]
    found: list[Problem] = []
    for group in groups:
        warnings: list[Problem] = []
        try:
            load(group, warnings=warnings)
        except TopologyInvalid as error:
            found.extend(error.problems)
        found.extend(replace(w, severity="error") if strict else w for w in warnings)
        if not any(problem.file in group and problem.severity == "error" for problem in found):
            say(f"valid: {one_line(' + '.join(group))}")
    for line in problem_annotations(found):
        say(line)
    errors = sum(problem.severity == "error" for problem in found)
    if errors:
        say(f"{errors} problem(s) found", err=True)
        sys.exit(EXIT_ERROR)


def echo_drift(files: tuple[str, ...], plan: Plan) -> None:
    """Each difference as an annotation at its object's line; what the topology lacks at the first file."""
    from provisioner.formats.github import drift_annotations
    from provisioner.topology.locate import Location, locations

    where = locations(files)
    fallback = Location(files[0], 1, 1) if files else None
    for line in drift_annotations(plan, where, fallback):
        say(line)
