"""Users, permissions, topic permissions and vhost limits: put and deleted through broker/accounts.py."""

from __future__ import annotations

from provisioner.broker import accounts as broker
from provisioner.executor import Executor, implements
from provisioner.handlers.changes import afters, befores
from provisioner.kinds.accounts import PERMISSION, TOPIC_PERMISSION, USER, VHOST_LIMIT
from provisioner.plan import Action, Change
from provisioner.topology.accounts import Permission, TopicPermission, User, VhostLimit


@implements(USER, Action.CREATE, Action.UPDATE)
def _put_users(executor: Executor, changes: tuple[Change, ...]) -> None:
    for change, user in zip(changes, afters(changes, User), strict=True):
        broker.put_user(executor.management, user, change.before if isinstance(change.before, User) else None)
        executor.mark_done()


@implements(USER, Action.DELETE)
def _delete_users(executor: Executor, changes: tuple[Change, ...]) -> None:
    for change in changes:
        broker.delete_user(executor.management, change.name)
        executor.mark_done()


@implements(PERMISSION, Action.CREATE, Action.UPDATE)
def _put_permissions(executor: Executor, changes: tuple[Change, ...]) -> None:
    for permission in afters(changes, Permission):
        broker.put_permission(executor.management, permission)
        executor.mark_done()


@implements(PERMISSION, Action.DELETE)
def _delete_permissions(executor: Executor, changes: tuple[Change, ...]) -> None:
    for permission in befores(changes, Permission):
        broker.delete_permission(executor.management, permission)
        executor.mark_done()


@implements(TOPIC_PERMISSION, Action.CREATE, Action.UPDATE)
def _put_topic_permissions(executor: Executor, changes: tuple[Change, ...]) -> None:
    for topic in afters(changes, TopicPermission):
        broker.put_topic_permission(executor.management, topic)
        executor.mark_done()


@implements(TOPIC_PERMISSION, Action.DELETE)
def _delete_topic_permissions(executor: Executor, changes: tuple[Change, ...]) -> None:
    for topic in befores(changes, TopicPermission):
        broker.delete_topic_permission(executor.management, topic)
        executor.mark_done()


@implements(VHOST_LIMIT, Action.CREATE, Action.UPDATE)
def _put_vhost_limits(executor: Executor, changes: tuple[Change, ...]) -> None:
    for limit in afters(changes, VhostLimit):
        broker.put_vhost_limit(executor.management, limit)
        executor.mark_done()


@implements(VHOST_LIMIT, Action.DELETE)
def _delete_vhost_limits(executor: Executor, changes: tuple[Change, ...]) -> None:
    for limit in befores(changes, VhostLimit):
        broker.delete_vhost_limit(executor.management, limit)
        executor.mark_done()
