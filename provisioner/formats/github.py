"""Pure: problems and drift as GitHub workflow commands (``::error file=F,line=L,col=C::message``).

GitHub reads a command from any line of a step's output that starts with ``::``.
Every value is escaped as the runner requires (``%`` ``\\r`` ``\\n`` in messages,
and ``:`` ``,`` too in properties), so no name can end a command early or start a
line, and so forge one, of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from provisioner.errors import Problem
from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.plan import SYMBOLS, Plan
from provisioner.topology.locate import Location
from provisioner.topology.model import Key

LEVELS = {"error": "error", "warning": "warning", "notice": "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, where: Location | None = None, title: str = "") -> str:
    """One workflow command line."""
    properties = []
    if where is not None:
        properties += [f"file={escape_property(where.file)}", f"line={where.line}", f"col={where.column}"]
    if title:
        properties.append(f"title={escape_property(title)}")
    joined = (" " + ",".join(properties)) if properties else ""
    return f"::{LEVELS[level]}{joined}::{escape_data(message)}"


def problem_annotations(problems: Iterable[Problem], title: str = "provision validate") -> list[str]:
    """A topology's problems, each at its file, line and column."""
    return [
        annotation(
            "warning" if problem.severity == "warning" else "error",
            problem.message + (f" (at {problem.path})" if problem.path else ""),
            Location(problem.file, problem.line, problem.column),
            title,
        )
        for problem in problems
    ]


def drift_annotations(
    plan: Plan, where: Mapping[Key, Location], fallback: Location | None, title: str = "provision drift"
) -> list[str]:
    """What drifted, at the line of the object in the topology (``fallback`` for what the topology lacks)."""
    lines = []
    for change in plan.changes:
        held = f" ({change.messages} messages, {change.consumers} consumers)" if change.messages is not None else ""
        scope = f" in vhost {change.vhost!r}" if change.vhost else " (cluster-wide)"
        message = f"drift: {SYMBOLS[change.action]} {change.action.value} {change.kind} {change.name!r}{scope}"
        lines.append(annotation("error", f"{message}: {change.reason}{held}", where.get(change.key, fallback), title))
    for item in plan.drift:
        label = "operator policy" if item.policy.kind == OPERATOR_POLICY.name else "policy"
        for hit in item.hits:
            key = (hit.kind, item.policy.vhost, hit.name)
            text = f"drift: {label} {item.policy.name!r} in {item.policy.vhost!r} changes {hit.text()}"
            lines.append(annotation("error", text, where.get(key, fallback), title))
    for problem in plan.problems:
        lines.append(annotation("error", problem, fallback, title))
    return lines
