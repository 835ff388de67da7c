"""The vhost kind: created through the management API with its settings; its settings update in place."""

from __future__ import annotations

from provisioner.kinds.kind import Kind
from provisioner.plan import Action

VHOST = Kind(
    "vhost",
    creation=10,
    deletion=0,
    actions=(Action.CREATE, Action.UPDATE),
    compared=("description", "default_queue_type"),
)
