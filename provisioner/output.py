"""Plans as text for people: grouped by vhost, terraform-like symbols, a summary line.

Returns (text, colour) pairs; the cli package decides whether colour is shown and prints.
"""

from __future__ import annotations

from itertools import groupby

from provisioner.errors import one_line
from provisioner.kinds.runtime_parameters import OPERATOR_POLICY
from provisioner.plan import SYMBOLS, Action, Change, Drift, Plan, Unmanaged, value_text

COLOURS = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REPLACE: "magenta", Action.DELETE: "red"}
Line = tuple[str, str | None]


def plan_lines(plan: Plan) -> list[Line]:
    """The plan as lines; an empty plan says so in one line."""
    if plan.in_sync and not plan.unmanaged and not plan.problems and not plan.cluster:
        return [("No changes. The broker matches the topology.", None)]
    lines: list[Line] = []
    by_vhost = groupby(sorted(plan.changes, key=lambda c: c.vhost), key=lambda c: c.vhost)
    ordered = {change.key: index for index, change in enumerate(plan.changes)}
    for vhost, changes in by_vhost:
        lines.append((f"vhost {vhost!r}:" if vhost else "cluster-wide:", None))
        for change in sorted(changes, key=lambda c: ordered[c.key]):
            lines.append((_change_line(change), COLOURS[change.action]))
            lines.extend(limit_lines(plan, change))
    if plan.unmanaged:
        lines.append(("", None))
        lines.append(("Not in the topology (left alone; --prune deletes them):", None))
        lines.extend((_unmanaged_line(item), None) for item in plan.unmanaged)
    lines.extend(drift_lines(plan))
    if plan.cluster:
        lines.append(("", None))
        lines.append(("Cluster (what the cluster's nodes hold back or lack):", None))
        lines.extend((f"      {note.text}", "yellow") for note in plan.cluster)
    if plan.problems:
        lines.append(("", None))
        lines.append(("Problems (apply refuses to start until they are fixed):", None))
        lines.extend((f"      {problem}", "red") for problem in plan.problems)
    lines.append(("", None))
    lines.append((summary_line(plan), None))
    return [(one_line(text), colour) for text, colour in lines]  # a name cannot break its line (forge a summary)


def drift_lines(plan: Plan) -> list[Line]:
    """What policies outside the topology change on managed objects (hidden drift)."""
    if not plan.drift:
        return []
    lines: list[Line] = [("", None), ("Drift: not in the topology, changes managed objects (--prune deletes):", None)]
    for item in plan.drift:
        lines.append((_drift_head(item), "yellow"))
        lines.extend((f"          {hit.text()}", None) for hit in item.hits)
    return lines


def _drift_head(item: Drift) -> str:
    policy = item.policy
    label = "operator policy" if policy.kind == OPERATOR_POLICY.name else "policy"
    return (
        f"      {label} {policy.name} in {policy.vhost!r} "  # type: ignore[union-attr]
        f"(pattern {policy.pattern!r}, apply-to {policy.apply_to}, priority {policy.priority}):"  # type: ignore[union-attr]
    )


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    drift = f" Drift: {counts['drift']} object(s) not in the topology change managed ones." if plan.drift else ""
    problems = f" {counts['problems']} problem(s)." if plan.problems else ""
    if plan.is_empty:
        return f"No changes. {len(plan.unmanaged)} object(s) not in the topology.{drift}{problems}"
    return (
        f"Plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['replace']} to replace, {counts['delete']} to delete.{drift}{problems}"
    )


def _change_line(change: Change) -> str:
    symbol = SYMBOLS[change.action]
    text = f"  {symbol:>3} {change.kind} {change.name}"
    if change.reason:
        text += f"  ({change.reason})"
    if change.messages is not None:
        text += f"  [{_count_text(change.messages, change.unacked, change.consumers)}]"
    return text + parked_text(change)


def _count_text(messages: int, unacked: int | None, consumers: int | None) -> str:
    """``5 messages (2 ready, 3 unacked), 1 consumers``; without the split when it was not read."""
    if unacked is None:
        return f"{messages} messages, {consumers} consumers"
    return f"{messages} messages ({messages - unacked} ready, {unacked} unacked), {consumers} consumers"


def limit_lines(plan: Plan, change: Change) -> list[Line]:
    """Under a change: each queue holding messages whose limits it changes, and what that would lose."""
    lines: list[Line] = []
    for limit in (item for item in plan.limits if item.by == change.key):
        held = plan.held_by(limit.vhost, limit.queue)
        if held is None or not held.messages:
            continue
        loss = plan.losses_by.get(limit)
        text = (
            f"        queue {limit.queue}: {limit.key} {value_text(limit.before)} -> {value_text(limit.after)} "
            f"({limit.source}); holds {held.text()}"
        )
        lines.append((text + (f"; {loss.what} (--force)" if loss else ""), "red" if loss else None))
    return lines


def parked_text(change: Change) -> str:
    """For a change that finishes an interrupted migration: what waits in its temporary queue."""
    parked = change.parked
    if parked is None:
        return ""
    held = "" if parked.messages is None else f"{parked.messages} messages, "
    return f"  [in {parked.name}: {held}{parked.bindings} bindings; apply --migrate finishes it]"


def _unmanaged_line(item: Unmanaged) -> str:
    text = f"      {item.resource.kind} {item.resource.name}" + (
        f" in {item.resource.vhost!r}" if item.resource.vhost else ""
    )
    if item.messages is not None:
        text += f"  [{_count_text(item.messages, item.unacked, item.consumers)}]"
    if item.note:
        text += f"  ({item.note})"
    return text
