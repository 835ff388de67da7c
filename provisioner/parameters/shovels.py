"""Dynamic shovels: move messages from a source queue or exchange to a destination, possibly on another broker."""

from __future__ import annotations

from provisioner.parameters.core import ParameterKind
from provisioner.parameters.federation import vhost_parameter

SHOVEL = ParameterKind(
    kind="shovel",
    file_key="shovels",
    plugins=("rabbitmq_shovel", "rabbitmq_shovel_management"),
    extension="shovel.js",
    **vhost_parameter("shovel", ("src-uri", "dest-uri")),
)
