"""provisioner: infrastructure-as-code for the RabbitMQ topologies Celery runs on.

The library's entry points (``provisioner.load_topology``, ``make_plan``, ``apply_topology``...) live in
``provisioner.api`` and load on first use: ``provision --version`` imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.version import __version__  # written once, in version.py (saved plans record it below the API)

if TYPE_CHECKING:
    from provisioner.api import (
        ApplyOptions,
        ApplyReport,
        Broker,
        Export,
        IncludeObject,
        LiveVhost,
        Plan,
        Topology,
        apply_topology,
        connect,
        export_topology,
        ignoring,
        include_object,
        load_topology,
        make_plan,
        parse_topology,
        read_live,
        render_config,
    )
    from provisioner.errors import (
        BrokerError,
        LockTimeout,
        PlanProblem,
        ProvisionerError,
        TopologyInvalid,
        UnsafeChange,
    )

__all__ = [
    "ApplyOptions",
    "ApplyReport",
    "Broker",
    "BrokerError",
    "Export",
    "IncludeObject",
    "LiveVhost",
    "LockTimeout",
    "Plan",
    "PlanProblem",
    "ProvisionerError",
    "Topology",
    "TopologyInvalid",
    "UnsafeChange",
    "__version__",
    "apply_topology",
    "connect",
    "export_topology",
    "ignoring",
    "include_object",
    "load_topology",
    "make_plan",
    "parse_topology",
    "read_live",
    "render_config",
]
_ERRORS = frozenset(
    ("BrokerError", "LockTimeout", "PlanProblem", "ProvisionerError", "TopologyInvalid", "UnsafeChange")
)


def __getattr__(name: str) -> Any:
    """Load the library API on first use, so importing the package stays as cheap as the CLI needs."""
    if name in __all__ and name not in _ERRORS:
        from provisioner import api

        return getattr(api, name)
    if name in _ERRORS:
        from provisioner import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'provisioner' has no attribute {name!r}")
