"""The topology's users, permissions, topic permissions and vhost settings x the live ones -> changes.

Pure: planning.py reads the live accounts (broker/accounts.py) first. The kinds
themselves (fields, text) are in provisioner/kinds, their writers in provisioner/handlers.
What must never go is kept whatever the topology says: the users apply connects
as and their permissions in the vhosts it applies; a plan that would leave the
cluster without an administrator is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from provisioner.errors import UnsafeChange
from provisioner.kinds import KINDS, describe, field_changes
from provisioner.kinds.accounts import PERMISSION, TOPIC_PERMISSION, VHOST_LIMIT
from provisioner.plan import Action, Change, FieldChange, Plan, Unmanaged
from provisioner.topology.accounts import ADMINISTRATOR, Accounts, LiveAccounts, User, VhostSettings

CONNECTING = "never pruned: provision connects as this user"


def account_differences(
    desired: Accounts, live: LiveAccounts, prune: bool, protected: frozenset[str]
) -> tuple[list[Change], list[Unmanaged]]:
    """Every change of users, permissions, topic permissions, vhost settings and limits, and what is left alone."""
    changes: list[Change] = []
    unmanaged: list[Unmanaged] = []
    changes += _settings(desired.settings, live.settings)
    for kind, wanted, present in (
        (VHOST_LIMIT.name, desired.limits, live.limits),
        (PERMISSION.name, desired.permissions, live.permissions),
        (TOPIC_PERMISSION.name, desired.topic_permissions, live.topic_permissions),
    ):
        owned = [r for r in present if desired.owns(r.vhost, kind)]
        found, left = _keyed(wanted, owned, prune, _kept_permission(protected) if kind == PERMISSION.name else _never)
        changes += found
        unmanaged += left
    _refuse_narrowing_the_connecting_user(desired, protected)
    if desired.users is not None and live.users is not None:
        found, left = _users(desired, live.users, prune, protected)
        changes += found
        unmanaged += left
        _refuse_no_administrator(live.users, found)
    return changes, unmanaged


def _refuse_narrowing_the_connecting_user(desired: Accounts, protected: frozenset[str]) -> None:
    """The connecting user's permissions in a vhost it applies must stay full: the apply declares with them."""
    for permission in desired.permissions:
        if permission.user in protected and (permission.configure, permission.write, permission.read) != FULL:
            raise UnsafeChange(
                f"refusing: provision applies vhost {permission.vhost!r} as user {permission.user!r}, whose "
                f"permissions there must stay configure/write/read '.*' (narrowed, this and every later apply fails)"
            )


FULL = (".*", ".*", ".*")


def _never(resource: Any) -> str:
    return ""


def _kept_permission(protected: frozenset[str]) -> Callable[[Any], str]:
    return lambda permission: CONNECTING if permission.user in protected else ""


def _settings(wanted: Iterable[VhostSettings], present: dict[str, VhostSettings]) -> list[Change]:
    changes = []
    for settings in wanted:
        live = present.get(settings.name)
        if live is None:
            continue  # the vhost is created with its settings
        fields = tuple(f for f in field_changes(live, settings) if f.after is not None)  # None: left as it is
        if fields:
            changes.append(Change(Action.UPDATE, live, settings, KINDS["vhost"].reason(fields), fields=fields))
    return changes


def _keyed(
    wanted: Iterable[Any], present: Iterable[Any], prune: bool, kept: Callable[[Any], str]
) -> tuple[list[Change], list[Unmanaged]]:
    """Create what is missing, update what differs, delete (with --prune) or list what the topology lacks."""
    desired = {r.key: r for r in wanted}
    live = {r.key: r for r in present}
    changes: list[Change] = []
    unmanaged: list[Unmanaged] = []
    for key in sorted(desired.keys() | live.keys()):
        after, before = desired.get(key), live.get(key)
        if before is None:
            changes.append(Change(Action.CREATE, None, after, describe(after)))
        elif after is None:
            note = kept(before)
            if prune and not note:
                changes.append(Change(Action.DELETE, before, None, "not in the topology (--prune)"))
            else:
                unmanaged.append(Unmanaged(before, note))
        elif after != before:
            fields = field_changes(before, after)
            changes.append(Change(Action.UPDATE, before, after, KINDS[after.kind].reason(fields), fields=fields))
    return changes, unmanaged


def _users(
    desired: Accounts, present: tuple[User, ...], prune: bool, protected: frozenset[str]
) -> tuple[list[Change], list[Unmanaged]]:
    wanted = [u for u in desired.users or ()]
    named = {u.name for u in wanted}
    changes, unmanaged = _keyed(wanted, [u for u in present if u.name in named], prune, _never)
    password_changes = []
    live = {u.name: u for u in present}
    for user in wanted:
        before = live.get(user.name)
        if before is not None and not user.credential.matches(before.credential):
            password_changes.append(user.name)
    for name in password_changes:
        index = next((i for i, c in enumerate(changes) if c.name == name), None)
        if index is None:
            changes.append(Change(Action.UPDATE, live[name], _named(wanted, name), "password", fields=(PASSWORD,)))
        else:
            found = changes[index]
            changes[index] = Change(
                Action.UPDATE, live[name], found.after, "password; " + found.reason, fields=(PASSWORD, *found.fields)
            )
    if desired.users_exclusive:
        for user in present:
            if user.name in named:
                continue
            if prune and user.name not in protected:
                changes.append(Change(Action.DELETE, user, None, "not in the topology (users_exclusive, --prune)"))
            else:
                unmanaged.append(Unmanaged(user, CONNECTING if user.name in protected else ""))
    changes.sort(key=lambda c: c.key)
    return changes, unmanaged


PASSWORD = FieldChange("password", None, None)  # changed; neither value is ever shown


def _named(users: list[User], name: str) -> User:
    return next(u for u in users if u.name == name)


def _refuse_no_administrator(present: tuple[User, ...], changes: list[Change]) -> None:
    """Refuse a plan after which no user is tagged administrator (nobody could manage the broker again)."""
    result = {u.name: u for u in present}
    for change in changes:
        if change.action is Action.DELETE:
            result.pop(change.name, None)
        elif isinstance(change.after, User):
            result[change.name] = change.after
    had = [u.name for u in present if ADMINISTRATOR in u.tags]
    if had and not any(ADMINISTRATOR in u.tags for u in result.values()):
        raise UnsafeChange(
            f"refusing to remove the last administrator ({', '.join(sorted(had))}): keep a user tagged "
            f"'administrator' in the topology"
        )


def with_account_changes(
    plan: Plan, desired: Accounts, live: LiveAccounts, prune: bool, protected: frozenset[str]
) -> Plan:
    """The plan with the account kinds' changes added (unordered: planning orders the plan once)."""
    found, left = account_differences(desired, live, prune, protected)
    return replace(plan, changes=(*plan.changes, *found), unmanaged=plan.unmanaged + tuple(left))  # keeps the rest
