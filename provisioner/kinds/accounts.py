"""Users, permissions, topic permissions and vhost limits: written through the management API, updated in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provisioner.kinds.kind import Kind
from provisioner.plan import Action, value_text

WRITTEN = (Action.CREATE, Action.UPDATE, Action.DELETE)  # created and updated by a put, deleted by a delete


def show(value: Any) -> str:
    """An account field as plans print it: lists in brackets, strings quoted."""
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, str) else value_text(value)


def _describer(fields: tuple[str, ...]) -> Callable[[Any], str]:
    return lambda resource: ", ".join(f"{name}: {show(getattr(resource, name))}" for name in fields)


def _account_kind(name: str, creation: int, deletion: int, fields: tuple[str, ...]) -> Kind:
    """An account kind: compared field by field, never replaced, printed with ``show``."""
    return Kind(name, creation, deletion, WRITTEN, compared=fields, describe=_describer(fields), show=show)


VHOST_LIMIT = _account_kind("vhost_limit", 20, 80, ("value",))
USER = _account_kind("user", 30, 90, ("tags", "limits"))
PERMISSION = _account_kind("permission", 40, 70, ("configure", "write", "read"))
# After exchanges are declared and before they are deleted: RabbitMQ 4.3 refuses a topic permission on an exchange
# that does not exist (400 no_such_exchange), and deleting one puts the user's others back (broker/accounts.py).
TOPIC_PERMISSION = _account_kind("topic_permission", 65, 45, ("write", "read"))
