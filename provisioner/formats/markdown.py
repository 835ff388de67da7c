"""Pure: a plan as a pull-request comment (GitHub-flavoured Markdown).

Every name comes from a topology or a broker, so every name is hostile: it is
written only inside a code span (no HTML, no mention, no link, no emphasis
there), with control characters escaped and, in a table, its pipes escaped.
The full plan is a fenced block no line of it can close.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import groupby

from provisioner.errors import one_line
from provisioner.formats.privileges import Privilege, privilege_changes
from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.output import plan_lines
from provisioner.plan import SYMBOLS, Action, Change, Plan

ACTIONS = (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)


def plan_markdown(plan: Plan, title: str = "provision plan") -> str:
    """The comment: a summary line, a table per vhost, what is destroyed, who gains power, the full plan folded."""
    parts = [f"### {_plain(title)}: {_summary(plan)}", ""]
    if plan.changes:
        parts += _table(plan)
    parts += _destructive(plan)
    parts += _privileges(privilege_changes(plan))
    parts += _drift(plan)
    parts += _problems(plan)
    parts += _details(plan)
    return "\n".join(parts).rstrip("\n") + "\n"


def code(text: str, in_table: bool = False) -> str:
    """``text`` as a code span nothing inside can end: fence longer than its longest backtick run."""
    text = one_line(text)
    if in_table:
        text = text.replace("|", "\\|")  # GFM splits cells before it reads code spans
    if text == "":
        return '`""`'
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _plain(text: str) -> str:
    """Fixed words of ours; still escaped, in case a caller passes a name."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>@~&])", r"\\\1", one_line(text))


def _summary(plan: Plan) -> str:
    counts = Counter(change.action for change in plan.changes)
    text = ", ".join(f"{counts[action]} to {action.value}" for action in ACTIONS) if plan.changes else "no changes"
    extra = []
    destroyed = counts[Action.REPLACE] + counts[Action.DELETE]
    if destroyed:
        extra.append(f"{destroyed} replaced or deleted")
    privileges = len(privilege_changes(plan))
    if privileges:
        extra.append(f"{privileges} privilege change(s)")
    if plan.drift:
        extra.append(f"{len(plan.drift)} drift")
    if plan.problems:
        extra.append(f"{len(plan.problems)} problem(s): apply refuses")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _table(plan: Plan) -> list[str]:
    lines = ["| vhost | + create | ~ update | -/+ replace | - delete |", "|---|--:|--:|--:|--:|"]
    for vhost, changes in groupby(sorted(plan.changes, key=lambda c: c.vhost), key=lambda c: c.vhost):
        counts = Counter(change.action for change in changes)
        name = code(vhost, in_table=True) if vhost else "(cluster-wide)"
        lines.append(f"| {name} | " + " | ".join(str(counts[action]) for action in ACTIONS) + " |")
    return [*lines, ""]


def _destructive(plan: Plan) -> list[str]:
    changes = [c for c in plan.changes if c.action in (Action.REPLACE, Action.DELETE)]
    if not changes:
        return []
    lines = ["#### :warning: Replaced or deleted", ""]
    lines += [f"- {_destroyed(change)}" for change in changes]
    return [*lines, ""]


def _destroyed(change: Change) -> str:
    verb = "replaced" if change.action is Action.REPLACE else "deleted"
    text = f"**{SYMBOLS[change.action]} {verb}** {change.kind} {code(change.name)}"
    text += f" in {code(change.vhost)}" if change.vhost else ""
    if change.messages is not None:
        text += f": **{change.messages} message(s)**"
        text += f", {change.consumers} consumer(s)" if change.consumers is not None else ""
    if change.fields:
        text += " — " + ", ".join(code(field.text()) for field in change.fields)
    elif change.reason:
        text += " — " + code(change.reason)
    return text


def _privileges(found: list[Privilege]) -> list[str]:
    if not found:
        return []
    lines = ["#### :closed_lock_with_key: Privilege changes", ""]
    for item in found:
        where = f" in vhost {code(item.vhost)}" + (f" on exchange {code(item.exchange)}" if item.exchange else "")
        if item.what == "tag":
            gains = f"the tag {code(item.value)}"
        elif item.what == "access":
            gains = f"access{where}"
        else:
            gains = f"{item.what} {code(item.value)} (every name){where}"
        lines.append(f"- user {code(item.user)} gains {gains}")
    return [*lines, ""]


def _drift(plan: Plan) -> list[str]:
    """Policies outside the topology that change managed objects: apply leaves them, reviewers should know."""
    if not plan.drift:
        return []
    lines = ["#### :mag: Drift: not in the topology, changes managed objects", ""]
    for item in plan.drift:
        label = "operator policy" if item.policy.kind == OPERATOR_POLICY.name else "policy"
        for hit in item.hits:
            lines.append(f"- {label} {code(item.policy.name)} in {code(item.policy.vhost)} changes {code(hit.text())}")
    return [*lines, ""]


def _problems(plan: Plan) -> list[str]:
    if not plan.problems:
        return []
    return ["#### :no_entry: Apply refuses to start", "", *(f"- {code(problem)}" for problem in plan.problems), ""]


def _details(plan: Plan) -> list[str]:
    # a change's line starts with its symbol, so the diff colouring marks + green and - red
    text = [_flush(one_line(line)) for line, _ in plan_lines(plan)]
    longest = max((len(run) for line in text for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    summary = f"The whole plan ({len(plan.changes)} change(s))"
    return ["<details><summary>" + summary + "</summary>", "", fence + "diff", *text, fence, "", "</details>"]


def _flush(line: str) -> str:
    stripped = line.lstrip(" ")
    return stripped if stripped[:1] in ("+", "-", "~") else line
