"""The Celery side: `render` writes the config module, `install(app)` is the worker runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.extras import require

if TYPE_CHECKING:
    from provisioner.celery.runtime import install

__all__ = ["install"]


def __getattr__(name: str) -> Any:
    """``install`` imports the runtime (and Celery) on first use: `provision render` needs neither."""
    if name == "install":
        require("celery", "the worker runtime (provisioner.celery.install)")
        from provisioner.celery.runtime import install

        return install
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
