"""Dynamic shovels: move messages from a source queue or exchange to a destination, possibly on another broker."""

from __future__ import annotations

from typing import Any

from provisioner.parameters.core import ParameterKind
from provisioner.parameters.federation import vhost_parameter

SOURCES = ("src_queue", "src_exchange", "src_address")


def _check(spec: dict[str, Any]) -> str:
    """The broker refuses a shovel without a source; say so at validate time, not half-way through an apply."""
    return "" if any(key in spec for key in SOURCES) else "a shovel needs src_queue, src_exchange or src_address"


SHOVEL = ParameterKind(
    kind="shovel",
    file_key="shovels",
    plugins=("rabbitmq_shovel", "rabbitmq_shovel_management"),
    extension="shovel.js",
    check=_check,
    **vhost_parameter("shovel", ("src-uri", "dest-uri")),
)
