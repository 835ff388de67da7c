"""Where the management API keeps each parameter kind: one table, so only broker/ spells an API path.

Per vhost (``operator-policies/{vhost}``) or for the whole cluster
(``global-parameters``, the kinds whose ``cluster_wide`` is set).
"""

from __future__ import annotations

from urllib.parse import quote

from provisioner.parameters import BY_KIND
from provisioner.parameters.federation import FEDERATION_UPSTREAM
from provisioner.parameters.global_parameters import GLOBAL_PARAMETER
from provisioner.parameters.operator_policies import OPERATOR_POLICY
from provisioner.parameters.shovels import SHOVEL

COLLECTIONS = {
    FEDERATION_UPSTREAM.kind: f"parameters/{FEDERATION_UPSTREAM.component}",  # runtime parameters, by component
    SHOVEL.kind: f"parameters/{SHOVEL.component}",
    OPERATOR_POLICY.kind: "operator-policies",
    GLOBAL_PARAMETER.kind: "global-parameters",
}


def collection(kind: str, vhost: str) -> str:
    """The API path of every object of parameter kind ``kind`` in ``vhost`` (of the cluster, if cluster-wide)."""
    if BY_KIND[kind].cluster_wide:
        return COLLECTIONS[kind]
    return f"{COLLECTIONS[kind]}/{quote(vhost, safe='')}"


def item(kind: str, vhost: str, name: str) -> str:
    """The API path of one object of parameter kind ``kind``."""
    return f"{collection(kind, vhost)}/{quote(name, safe='')}"
