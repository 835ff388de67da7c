"""What the user allows an apply to do, and the defaults the CLI and the library share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module at start: nothing heavy here
    from provisioner.live_state import IncludeObject

DEFAULT_WORKERS = 12  # parallel AMQP connections of an apply: 10,000 fresh objects about a third faster than 6
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds an apply waits for another apply's vhost lock


@dataclass(frozen=True)
class ApplyOptions:
    """What the user allowed: replacements (--migrate), deleting non-empty queues (--force)."""

    prune: bool = False
    migrate: bool = False
    force: bool = False
    workers: int = DEFAULT_WORKERS
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    include_object: IncludeObject | None = None  # what of the broker apply sees; None: live_state.include_object
