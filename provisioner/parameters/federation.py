"""Federation upstreams: where a vhost's federated exchanges and queues take their messages from."""

from __future__ import annotations

from typing import Any

from provisioner.parameters.core import Parameter, ParameterKind, dashed, wrap_uris

COMPONENT = "federation-upstream"


def vhost_parameter(component: str, uri_fields: tuple[str, ...]) -> dict[str, Any]:
    """The ParameterKind fields every vhost-scoped runtime parameter (federation, shovel) shares."""

    def body(parameter: Parameter) -> dict[str, Any]:
        return {"component": component, "vhost": parameter.vhost, "name": parameter.name, "value": parameter.plain()}

    return {
        "from_file": lambda spec: wrap_uris(dashed(spec), uri_fields),
        "from_row": lambda row: wrap_uris(row.get("value") or {}, uri_fields),
        "body": body,
        "uri_fields": uri_fields,
        "component": component,
        "tags": ("policymaker", "administrator"),
    }


FEDERATION_UPSTREAM = ParameterKind(
    kind="federation_upstream",
    file_key="federation_upstreams",
    plugins=("rabbitmq_federation", "rabbitmq_federation_management"),
    extension="federation.js",
    **vhost_parameter(COMPONENT, ("uri",)),
)
