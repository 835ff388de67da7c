"""Users, permissions, topic permissions and vhost limits: written through the management API, updated in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provisioner.kinds.kind import Handler, Kind, afters
from provisioner.plan import Action, Change, value_text
from provisioner.topology.accounts import User

if TYPE_CHECKING:
    from provisioner.apply import Executor


def show(value: Any) -> str:
    """An account field as plans print it: lists in brackets, strings quoted."""
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, str) else value_text(value)


def _describer(fields: tuple[str, ...]) -> Callable[[Any], str]:
    return lambda resource: ", ".join(f"{name}: {show(getattr(resource, name))}" for name in fields)


def _each(write: str, side: str) -> Handler:
    """A handler that calls broker/accounts.py's ``write`` with each change's ``side`` object."""

    def handler(executor: Executor, changes: tuple[Change, ...]) -> None:
        from provisioner.broker import accounts as broker

        for change in changes:
            getattr(broker, write)(executor.management, getattr(change, side))
            executor.mark_done()

    return handler


def _put_user(executor: Executor, changes: tuple[Change, ...]) -> None:
    from provisioner.broker.accounts import put_user

    for change, user in zip(changes, afters(changes, User), strict=True):
        put_user(executor.management, user, change.before if isinstance(change.before, User) else None)
        executor.mark_done()


def _delete_user(executor: Executor, changes: tuple[Change, ...]) -> None:
    from provisioner.broker.accounts import delete_user

    for change in changes:
        delete_user(executor.management, change.name)
        executor.mark_done()


def _account_kind(
    name: str, creation: int, deletion: int, fields: tuple[str, ...], handlers: dict[Action, Handler]
) -> Kind:
    """An account kind: compared field by field, never replaced, printed with ``show``."""
    return Kind(name, creation, deletion, handlers, compared=fields, describe=_describer(fields), show=show)


def _written(name: str) -> dict[Action, Handler]:
    """Create and update put the object, delete deletes it (broker/accounts.py put_NAME, delete_NAME)."""
    put = _each(f"put_{name}", "after")
    return {Action.CREATE: put, Action.UPDATE: put, Action.DELETE: _each(f"delete_{name}", "before")}


VHOST_LIMIT = _account_kind("vhost_limit", 20, 80, ("value",), _written("vhost_limit"))
USER_HANDLERS: dict[Action, Handler] = {Action.CREATE: _put_user, Action.UPDATE: _put_user, Action.DELETE: _delete_user}
USER = _account_kind("user", 30, 90, ("tags", "limits"), USER_HANDLERS)
PERMISSION = _account_kind("permission", 40, 70, ("configure", "write", "read"), _written("permission"))
TOPIC_PERMISSION = _account_kind("topic_permission", 50, 60, ("write", "read"), _written("topic_permission"))
