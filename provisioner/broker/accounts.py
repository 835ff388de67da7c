"""Users, permissions, topic permissions, vhost settings and limits over the management API.

Reads only what the topology manages (nothing at all for a topology without
accounts), so a plan of exchanges and queues still costs one request per vhost.
Password hashes read here stay inside a hidden Credential.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from provisioner.broker.management import Management, ManagementError
from provisioner.errors import BrokerError
from provisioner.kinds.accounts import PERMISSION, TOPIC_PERMISSION, VHOST_LIMIT
from provisioner.topology.accounts import (
    SHA256,
    Accounts,
    Credential,
    LiveAccounts,
    Permission,
    TopicPermission,
    User,
    VhostLimit,
    VhostSettings,
)


def _q(name: str) -> str:
    return quote(name, safe="")


def _get(management: Management, path: str) -> Any:
    return management.get(path)


def read_accounts(management: Management, desired: Accounts, vhosts: list[str]) -> LiveAccounts:
    """What the broker holds of the kinds the topology manages, in a few requests."""
    if desired.is_empty:
        return LiveAccounts()
    users = None
    if desired.users is not None:
        limits = {row["user"]: row.get("value") or {} for row in _get(management, "user-limits") or []}
        users = tuple(sorted((_user(row, limits) for row in _get(management, "users") or []), key=lambda u: u.key))
    settings: dict[str, VhostSettings] = {}
    vhost_limits: list[VhostLimit] = []
    permissions: list[Permission] = []
    topics: list[TopicPermission] = []
    for vhost in vhosts:
        found = _get(management, f"vhosts/{_q(vhost)}")
        if found is None:
            continue
        settings[vhost] = VhostSettings(vhost, found.get("description") or "", _queue_type(found))
        if desired.owns(vhost, VHOST_LIMIT.name):
            for row in _get(management, f"vhost-limits/{_q(vhost)}") or []:
                vhost_limits += [VhostLimit(vhost, k, int(v)) for k, v in sorted((row.get("value") or {}).items())]
        if desired.owns(vhost, PERMISSION.name):
            permissions += [
                Permission(vhost, r["user"], r["configure"], r["write"], r["read"])
                for r in _get(management, f"vhosts/{_q(vhost)}/permissions") or []
            ]
        if desired.owns(vhost, TOPIC_PERMISSION.name):
            topics += [
                TopicPermission(vhost, r["user"], r["exchange"], r["write"], r["read"])
                for r in _get(management, f"vhosts/{_q(vhost)}/topic-permissions") or []
            ]
    return LiveAccounts(users, settings, tuple(vhost_limits), tuple(permissions), tuple(topics))


def _user(row: dict[str, Any], limits: dict[str, dict[str, Any]]) -> User:
    tags = row.get("tags") or []
    if isinstance(tags, str):  # older brokers answer "a,b"
        tags = [t for t in tags.split(",") if t]
    credential = Credential(None, row.get("password_hash") or "", row.get("hashing_algorithm") or SHA256)
    user_limits = {k: int(v) for k, v in sorted(limits.get(row["name"], {}).items())}
    return User(row["name"], tuple(sorted(set(tags))), user_limits, credential)


def _queue_type(vhost: dict[str, Any]) -> str | None:
    value = vhost.get("default_queue_type") or (vhost.get("metadata") or {}).get("default_queue_type")
    return None if value in (None, "undefined") else str(value)


# Writing. Every write names the object, never a credential: an error is re-raised without the request body.


def put_user(management: Management, user: User, live: User | None) -> None:
    """Create or update a user; an unchanged password is kept by sending the live hash back."""
    body: dict[str, Any] = {"tags": ",".join(user.tags)}
    credential = user.credential
    if live is not None and credential.matches(live.credential):
        credential = live.credential
    if credential.password is not None:
        body["password"] = credential.password
    else:
        body["password_hash"] = credential.password_hash or ""
        body["hashing_algorithm"] = credential.hashing_algorithm
    try:
        management.put(f"users/{_q(user.name)}", body)
    except ManagementError as error:
        raise BrokerError(_scrubbed(str(error), user.credential)) from None
    for name, value in user.limits.items():
        if live is None or live.limits.get(name) != value:
            management.put(f"user-limits/{_q(user.name)}/{_q(name)}", {"value": value})
    for name in sorted((live.limits if live else {}).keys() - user.limits.keys()):
        management.delete(f"user-limits/{_q(user.name)}/{_q(name)}")


def _scrubbed(text: str, credential: Credential) -> str:
    """The broker's refusal with the password or hash masked where it quotes them ('x', "x", <<"x">>).

    Only quoted: masking every occurrence would mask ordinary words equal to a short password.
    """
    for secret in (credential.password, credential.password_hash):
        if secret:
            for quoted in {repr(secret), f"'{secret}'", f'"{secret}"', json.dumps(secret), f'<<"{secret}">>'}:
                text = text.replace(quoted, "'***'")
    return text


def delete_user(management: Management, name: str) -> None:
    management.delete(f"users/{_q(name)}")


def put_permission(management: Management, permission: Permission) -> None:
    body = {"configure": permission.configure, "write": permission.write, "read": permission.read}
    management.put(f"permissions/{_q(permission.vhost)}/{_q(permission.user)}", body)


def delete_permission(management: Management, permission: Permission) -> None:
    management.delete(f"permissions/{_q(permission.vhost)}/{_q(permission.user)}")


def put_topic_permission(management: Management, topic: TopicPermission) -> None:
    body = {"exchange": topic.exchange, "write": topic.write, "read": topic.read}
    management.put(f"topic-permissions/{_q(topic.vhost)}/{_q(topic.user)}", body)


def topic_permissions_on(management: Management, vhost: str, exchange: str) -> list[dict[str, Any]]:
    """The topic permissions of every user on one exchange ([] for a user who may not read them)."""
    try:
        rows = _get(management, f"vhosts/{_q(vhost)}/topic-permissions") or []
    except ManagementError as error:
        if error.status in (401, 403):
            return []
        raise
    return [row for row in rows if row.get("exchange") == exchange]


def put_topic_permissions(management: Management, vhost: str, rows: list[dict[str, Any]]) -> None:
    """Put topic permissions back as GET /api/vhosts/{vhost}/topic-permissions listed them."""
    for row in rows:
        body = {"exchange": row["exchange"], "write": row["write"], "read": row["read"]}
        management.put(f"topic-permissions/{_q(vhost)}/{_q(row['user'])}", body)


def delete_topic_permission(management: Management, topic: TopicPermission) -> None:
    """Delete one exchange's topic permission of a user.

    RabbitMQ 3.10's DELETE removes all of the user's topic permissions in the
    vhost, so the others are put back at once (for that instant they are missing).
    """
    path = f"topic-permissions/{_q(topic.vhost)}/{_q(topic.user)}"
    others = [row for row in _get(management, path) or [] if row.get("exchange") != topic.exchange]
    management.delete(path, {"exchange": topic.exchange})
    for row in others:
        body = {"exchange": row["exchange"], "write": row["write"], "read": row["read"]}
        management.put(path, body)


def put_vhost_limit(management: Management, limit: VhostLimit) -> None:
    management.put(f"vhost-limits/{_q(limit.vhost)}/{_q(limit.name)}", {"value": limit.value})


def delete_vhost_limit(management: Management, limit: VhostLimit) -> None:
    management.delete(f"vhost-limits/{_q(limit.vhost)}/{_q(limit.name)}")


def vhost_body(settings: VhostSettings | None) -> dict[str, Any]:
    """The PUT /api/vhosts body for these settings (3.10 reads ``defaultqueuetype``, later ones both)."""
    body: dict[str, Any] = {}
    if settings is not None and settings.description is not None:
        body["description"] = settings.description
    if settings is not None and settings.default_queue_type is not None:
        body["defaultqueuetype"] = body["default_queue_type"] = settings.default_queue_type
    return body


def put_vhost_settings(management: Management, settings: VhostSettings) -> None:
    """Update a vhost's metadata, keeping its tags; a default queue type the broker kept is one clear error."""
    found = _get(management, f"vhosts/{_q(settings.name)}") or {}
    body = vhost_body(settings) | {"tags": ",".join(found.get("tags") or [])}
    management.put(f"vhosts/{_q(settings.name)}", body)
    if settings.default_queue_type is None:
        return
    now = _queue_type(_get(management, f"vhosts/{_q(settings.name)}") or {})
    if now != settings.default_queue_type:
        raise BrokerError(
            f"the broker kept default_queue_type {now or 'undefined'!r} of vhost {settings.name!r}: "
            f"this broker sets a vhost's default queue type only when it creates the vhost"
        )
