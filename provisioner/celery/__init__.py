"""The Celery side: `render` writes the config module, `install(app)` is the worker runtime."""

from __future__ import annotations

from provisioner.celery.runtime import install

__all__ = ["install"]
