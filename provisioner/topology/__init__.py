"""Topology files -> the model: ``load`` (files.py) reads and checks them into a ``Topology`` (model.py).

Both load on first use, from the table below, so that importing the model (``provisioner.topology.model``,
which every pure room does) reads no YAML and no JSON Schema: the loader is an adapter, the model is not.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for mypy and the import contracts (which see this import)
    from provisioner.topology.files import load
    from provisioner.topology.model import Topology

__all__ = ["Topology", "load"]
_HOMES = {"load": "provisioner.topology.files", "Topology": "provisioner.topology.model"}


def __getattr__(name: str) -> Any:
    """``load`` and ``Topology`` from their modules, on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module 'provisioner.topology' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
