"""The tool's version: written once here; pyproject.toml and ``provisioner.__version__`` read it."""

from __future__ import annotations

__version__ = "0.1.0"
