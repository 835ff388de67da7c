"""The vhost kind: created through the management API with its settings; its settings update in place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.kinds.kind import Kind, afters
from provisioner.plan import Action, Change
from provisioner.topology.accounts import VhostSettings

if TYPE_CHECKING:
    from provisioner.apply import Executor


def _create(executor: Executor, changes: tuple[Change, ...]) -> None:
    from provisioner.broker.accounts import vhost_body

    for change in changes:
        settings = next((s for s in executor.desired.accounts.settings if s.name == change.name), None)
        executor.management.create_vhost(change.name, executor.endpoints.amqp_user, vhost_body(settings))
        executor.mark_done()


def _put_settings(executor: Executor, changes: tuple[Change, ...]) -> None:
    from provisioner.broker.accounts import put_vhost_settings

    for settings in afters(changes, VhostSettings):
        put_vhost_settings(executor.management, settings)
        executor.mark_done()


VHOST = Kind(
    "vhost",
    creation=10,
    deletion=0,
    handlers={Action.CREATE: _create, Action.UPDATE: _put_settings},
    compared=("description", "default_queue_type"),
)
