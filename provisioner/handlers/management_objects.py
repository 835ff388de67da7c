"""Vhosts, policies and the parameter kinds: written through the management API, changed in place."""

from __future__ import annotations

from provisioner.broker.accounts import put_vhost_settings, vhost_body
from provisioner.executor import Executor, implements
from provisioner.handlers.changes import afters
from provisioner.kinds.policy import POLICY
from provisioner.kinds.runtime_parameters import FEDERATION_UPSTREAM, GLOBAL_PARAMETER, OPERATOR_POLICY, SHOVEL
from provisioner.kinds.vhost import VHOST
from provisioner.parameters.broker import delete_parameter, put_parameter
from provisioner.parameters.core import Parameter
from provisioner.plan import Action, Change
from provisioner.topology.accounts import VhostSettings
from provisioner.topology.model import Policy


@implements(VHOST, Action.CREATE)
def _create_vhosts(executor: Executor, changes: tuple[Change, ...]) -> None:
    for change in changes:
        settings = next((s for s in executor.desired.accounts.settings if s.name == change.name), None)
        executor.management.create_vhost(change.name, executor.endpoints.amqp_user, vhost_body(settings))
        executor.mark_done()


@implements(VHOST, Action.UPDATE)
def _put_vhost_settings(executor: Executor, changes: tuple[Change, ...]) -> None:
    for settings in afters(changes, VhostSettings):
        put_vhost_settings(executor.management, settings)
        executor.mark_done()


@implements(POLICY, Action.CREATE, Action.UPDATE)
def _put_policies(executor: Executor, changes: tuple[Change, ...]) -> None:
    for policy in afters(changes, Policy):
        body = {
            "pattern": policy.pattern,
            "definition": policy.definition,
            "priority": policy.priority,
            "apply-to": policy.apply_to,
        }
        executor.management.put_policy(policy.vhost, policy.name, body)
        executor.mark_done()


@implements(POLICY, Action.DELETE)
def _delete_policies(executor: Executor, changes: tuple[Change, ...]) -> None:
    for change in changes:
        executor.management.delete_policy(change.vhost, change.name)
        executor.mark_done()


PARAMETER_KINDS = (GLOBAL_PARAMETER, OPERATOR_POLICY, FEDERATION_UPSTREAM, SHOVEL)


def _put_parameters(executor: Executor, changes: tuple[Change, ...]) -> None:
    for change in changes:
        assert isinstance(change.after, Parameter)
        put_parameter(executor.management, change.after)
        executor.mark_done()


def _delete_parameters(executor: Executor, changes: tuple[Change, ...]) -> None:
    """Deletes a parameter, or an operator policy the vhost diff lists (--prune) by its kind, vhost and name."""
    for change in changes:
        delete_parameter(executor.management, change.before)  # type: ignore[arg-type]
        executor.mark_done()


for _kind in PARAMETER_KINDS:
    implements(_kind, Action.CREATE, Action.UPDATE)(_put_parameters)
    implements(_kind, Action.DELETE)(_delete_parameters)
