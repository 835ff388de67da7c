"""The parameter kinds as the registry (provisioner/kinds) knows them: phase ranks, actions, tags, create text.

Everything else of these kinds (file, schema, live reading, comparison, export)
stays in provisioner/parameters/; the registry only orders their changes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from provisioner.kinds import policy
from provisioner.kinds.kind import Kind
from provisioner.parameters import BY_KIND
from provisioner.parameters.core import Parameter, value_text
from provisioner.plan import Action

WRITTEN = (Action.CREATE, Action.UPDATE, Action.DELETE)  # created and updated by a put, deleted by a delete


def describe(parameter: Parameter) -> str:
    """The create line's text: the value, URIs masked."""
    value, own = parameter.value, BY_KIND[parameter.kind].describe
    if own is not None:
        return own(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {value_text(v)}" for k, v in sorted(value.items()))
    return value_text(value)


def _kind(name: str, creation: int, deletion: int) -> Kind:
    return Kind(name, creation, deletion, WRITTEN, describe=describe, write_tags=BY_KIND[name].tags)


def _described(resource: Any) -> str:
    return describe(resource) if isinstance(resource, Parameter) else policy.OPERATOR_POLICY.describe(resource)


# Ranks: global parameters after the vhost, deleted last; operator policies with policies; federation
# and shovels after the exchanges, queues and bindings they use, deleted before them.
GLOBAL_PARAMETER = _kind("global_parameter", 15, 95)
OPERATOR_POLICY = replace(
    policy.OPERATOR_POLICY, creation=95, actions=WRITTEN, describe=_described, write_tags=("administrator",)
)
FEDERATION_UPSTREAM = _kind("federation_upstream", 100, 6)
SHOVEL = _kind("shovel", 105, 5)
