"""A module imported on first use: a plan that never opens an AMQP connection never pays for pika."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module; the first attribute read imports it (and the submodules named)."""

    def __init__(self, name: str, *submodules: str) -> None:
        self._name, self._submodules = name, submodules
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            for submodule in self._submodules:
                importlib.import_module(f"{self._name}.{submodule}")
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)
