"""The topology's operator policies (kept with the parameter kinds) as the policies the readiness rules read.

Beside operator_policies.py, not in it: the model's Topology reaches the parameter
kinds through ``provisioner.parameters``, so that package must not import the model back.
"""

from __future__ import annotations

from provisioner.parameters.core import Parameters
from provisioner.parameters.operator_policies import OPERATOR_POLICY
from provisioner.topology.model import OperatorPolicy


def as_policies(parameters: Parameters) -> tuple[OperatorPolicy, ...]:
    """Each operator policy among ``parameters`` as an OperatorPolicy, in their order."""
    return tuple(
        OperatorPolicy(
            parameter.vhost,
            parameter.name,
            str(parameter.value.get("pattern", "")),
            dict(parameter.value.get("definition") or {}),
            str(parameter.value.get("apply-to", "all")),
            int(parameter.value.get("priority", 0)),
        )
        for parameter in parameters.objects
        if parameter.kind == OPERATOR_POLICY.kind and isinstance(parameter.value, dict)
    )
