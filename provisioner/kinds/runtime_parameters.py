"""The parameter kinds as the registry (provisioner/kinds) knows them: phase ranks, handlers, tags, create text.

Everything else of these kinds (file, schema, live reading, comparison, export)
stays in provisioner/parameters/; the registry only orders and runs their changes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from provisioner.kinds import policy
from provisioner.kinds.kind import Handler, Kind
from provisioner.parameters import BY_KIND
from provisioner.parameters.compare import describe
from provisioner.parameters.core import Parameter
from provisioner.plan import Action, Change

if TYPE_CHECKING:
    from provisioner.apply import Executor


def _put(executor: Executor, changes: tuple[Change, ...]) -> None:
    from provisioner.parameters.broker import put_parameter  # the registry stays free of broker clients

    for change in changes:
        assert isinstance(change.after, Parameter)
        put_parameter(executor.management, change.after)
        executor.mark_done()


def _delete(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Deletes a parameter, or an operator policy the vhost diff lists (--prune) by its kind, vhost and name."""
    from provisioner.parameters.broker import delete_parameter

    for change in changes:
        delete_parameter(executor.management, change.before)  # type: ignore[arg-type]
        executor.mark_done()


HANDLERS: dict[Action, Handler] = {Action.CREATE: _put, Action.UPDATE: _put, Action.DELETE: _delete}


def _kind(name: str, creation: int, deletion: int) -> Kind:
    return Kind(name, creation, deletion, HANDLERS, describe=describe, write_tags=BY_KIND[name].tags)


def _described(resource: Any) -> str:
    return describe(resource) if isinstance(resource, Parameter) else policy.OPERATOR_POLICY.describe(resource)


# Ranks: global parameters after the vhost, deleted last; operator policies with policies; federation
# and shovels after the exchanges, queues and bindings they use, deleted before them.
GLOBAL_PARAMETER = _kind("global_parameter", 15, 95)
OPERATOR_POLICY = replace(
    policy.OPERATOR_POLICY, creation=95, handlers=HANDLERS, describe=_described, write_tags=("administrator",)
)
FEDERATION_UPSTREAM = _kind("federation_upstream", 100, 6)
SHOVEL = _kind("shovel", 105, 5)
