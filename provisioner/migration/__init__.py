"""Replacing a queue without losing a message: ``steps`` plans (pure), ``amqp`` carries the steps out over pika.

Importing this package loads neither: the pure rooms import ``steps`` alone. The names of a
migration's queues live here, so that plan and export recognise a migration in progress without
loading ``steps`` (its dataclasses and the limits it reads cost a no-op plan about 7 ms of CPU).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from provisioner.topology.model import MIGRATE_SUFFIX

MAX_NAME_BYTES = 255


def suffixed(name: str, suffix: str) -> str:
    """``name`` + ``suffix`` within 255 bytes: a long name is cut and a digest of it keeps it unique."""
    full = f"{name}{suffix}"
    if len(full.encode("utf-8")) <= MAX_NAME_BYTES:
        return full
    digest = "~" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8")) - len(digest)
    return name.encode("utf-8")[:room].decode("utf-8", "ignore") + digest + suffix


def temporary_name(queue: str) -> str:
    """The name of the temporary queue that marks a migration of ``queue`` in progress."""
    return suffixed(queue, MIGRATE_SUFFIX)


def is_migration_queue(name: str) -> bool:
    """Whether a live queue is a migration in progress: plan shows it, prune never deletes it."""
    return name.endswith(MIGRATE_SUFFIX)


def original_name(temporary: str, candidates: Iterable[str] = ()) -> str:
    """The queue a temporary queue belongs to: the candidate it is named after, else its name less the suffix."""
    for candidate in candidates:
        if temporary_name(candidate) == temporary:
            return candidate
    return temporary[: -len(MIGRATE_SUFFIX)]
