"""Pure: the changes of a plan that give someone more power over the broker, for reviewers to see first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provisioner.kinds.accounts import PERMISSION, USER
from provisioner.plan import Action, Change, Plan

# Tags that let a user change what others rely on: every object and user, policies, or who it publishes as.
PRIVILEGED_TAGS = ("administrator", "policymaker", "impersonator")
# Patterns that match every name: the broker reads them as regular expressions.
EVERYTHING = frozenset({".*", "^.*$", "^.*", ".*$", ".+", "^.+$", "(.*)", "^(.*)$"})
PERMISSION_FIELDS = {"permission": ("configure", "write", "read"), "topic_permission": ("write", "read")}


@dataclass(frozen=True)
class Privilege:
    """One way a change widens someone's power: who gains what (``what`` is fixed words, the rest names)."""

    user: str
    what: str  # "tag" | "access" | the permissions widened: "configure, read"
    value: str  # the tag, or the pattern(s) ("" for access)
    vhost: str = ""
    exchange: str = ""  # topic permissions

    def text(self) -> str:
        """Plain text, names quoted: ``user 'app' gains the tag 'administrator'``."""
        where = f" in vhost {self.vhost!r}" + (f" on exchange {self.exchange!r}" if self.exchange else "")
        if self.what == "tag":
            return f"user {self.user!r} gains the tag {self.value!r}"
        if self.what == "access":
            return f"user {self.user!r} gains access{where}"
        return f"user {self.user!r} gains {self.what} {self.value!r} (every name){where}"


def privilege_changes(plan: Plan) -> list[Privilege]:
    """Every user gaining a privileged tag, a vhost, or a permission widened to match every name."""
    found: list[Privilege] = []
    for change in plan.changes:
        if change.action not in (Action.CREATE, Action.UPDATE, Action.REPLACE):
            continue
        if change.kind == USER.name:
            found += _tags_gained(change)
        elif change.kind in PERMISSION_FIELDS:
            found += _permission_widened(change)
    return found


def _tags_gained(change: Change) -> list[Privilege]:
    before = set(_get(change.before, "tags") or ())
    after = set(_get(change.after, "tags") or ())
    return [Privilege(change.name, "tag", tag) for tag in PRIVILEGED_TAGS if tag in after and tag not in before]


def _permission_widened(change: Change) -> list[Privilege]:
    user = str(_get(change.after, "user"))
    exchange = str(_get(change.after, "exchange") or "")
    found = []
    if change.before is None and change.kind == PERMISSION.name:
        found.append(Privilege(user, "access", "", change.vhost))
    widened = [
        field
        for field in PERMISSION_FIELDS[change.kind]
        if _get(change.after, field) in EVERYTHING and _get(change.before, field) not in EVERYTHING
    ]
    if widened:
        patterns = sorted({str(_get(change.after, field)) for field in widened})
        found.append(Privilege(user, ", ".join(widened), " ".join(patterns), change.vhost, exchange))
    return found


def _get(resource: Any, field: str) -> Any:
    return getattr(resource, field, None) if resource is not None else None
