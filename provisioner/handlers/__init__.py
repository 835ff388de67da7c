"""The writer of each (action, kind): one small function per case, registered into the executor's table.

A kind (provisioner/kinds) says what it is and which actions it has; the
function that runs an action lives here, in orchestration, and registers itself
with ``executor.implements`` (Alembic's toimpl). Importing this package fills
``executor.HANDLERS``; tests/test_kinds.py checks that every phase has one.
"""

from __future__ import annotations

from provisioner.handlers import accounts, amqp_objects, management_objects

__all__ = ["accounts", "amqp_objects", "management_objects"]
