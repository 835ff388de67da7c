"""Parameter kinds over the management API: read what the topology owns, write one object at a time.

Reads nothing for a topology without these kinds. An error the broker sends
back never carries a URI's password: every message is redacted first.
"""

from __future__ import annotations

from typing import Any

from provisioner.broker.management import Management, ManagementError
from provisioner.errors import BrokerError
from provisioner.parameters import BY_KIND
from provisioner.parameters.compare import LiveParameters
from provisioner.parameters.core import Parameter, Parameters
from provisioner.redact import redact
from provisioner.topology.model import OperatorPolicy


def read_parameters(management: Management, desired: Parameters) -> LiveParameters:
    """The live objects of every owned (vhost, kind); a kind whose plugin is off is noted, not read."""
    if desired.is_empty:
        return LiveParameters()
    off = _plugins_off(management, {BY_KIND[kind] for _, kind in desired.owned})
    objects: list[Parameter] = []
    read = set()
    for vhost, name in sorted(desired.owned):
        kind = BY_KIND[name]
        if name in off:
            continue
        rows = management.parameter_objects(kind.kind, vhost)
        objects += [Parameter(kind.kind, vhost, row["name"], kind.from_row(row)) for row in rows]
        read.add((vhost, name))
    return LiveParameters(tuple(objects), frozenset(off), frozenset(read))


def plugin_off(management: Management, kind: str) -> bool:
    """Whether the plugin of parameter kind ``kind`` is off (one GET /api/extensions)."""
    return kind in _plugins_off(management, {BY_KIND[kind]})


def _plugins_off(management: Management, kinds: set[Any]) -> set[str]:
    """Kinds whose plugin is off: its management extension is missing from GET /api/extensions."""
    if not any(kind.extension for kind in kinds):
        return set()
    extensions = _extension_names(management.extensions())
    return {kind.kind for kind in kinds if kind.extension and kind.extension not in extensions}


def _extension_names(rows: list[dict[str, Any]]) -> set[str]:
    """Every script GET /api/extensions names: RabbitMQ 4.3 lists a plugin's scripts where 3.x gives one name."""
    names: set[str] = set()
    for row in rows:
        scripts = row.get("javascript")
        listed = scripts if isinstance(scripts, list) else [scripts]
        names.update(name for name in listed if isinstance(name, str))
    return names


def put_parameter(management: Management, parameter: Parameter) -> None:
    kind = BY_KIND[parameter.kind]
    try:
        management.put_parameter_object(kind.kind, parameter.vhost, parameter.name, kind.body(parameter))
    except ManagementError as error:
        raise BrokerError(redact(str(error), parameter.secrets())) from None


def delete_parameter(management: Management, parameter: Parameter | OperatorPolicy) -> None:
    management.delete_parameter_object(parameter.kind, parameter.vhost, parameter.name)
