"""The executor: runs a plan in the one order of provisioner.kinds.PHASES through the handlers' table.

The table maps (action, kind) to the function that writes it. It is filled from
outside, by provisioner/handlers/ (``implements``), the way Alembic's toimpl
registers each operation's implementation: the kinds never import the executor
and the executor imports no handler. apply.py imports both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from provisioner.broker.amqp import Amqp, Operation, OperationFailed
from provisioner.broker.cluster import add_members
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.held import read_held
from provisioner.broker.management import Management
from provisioner.errors import BrokerError
from provisioner.kinds import PHASES
from provisioner.kinds.kind import Kind
from provisioner.options import ApplyOptions
from provisioner.plan import Action, Change, Held, Plan
from provisioner.profile import phase
from provisioner.topology.model import Binding, Exchange, Queue, Topology

Progress = Callable[[int], None]


@dataclass
class ApplyReport:
    """What an apply did: the plan it ran and how many changes completed."""

    plan: Plan = field(default_factory=Plan)
    done: int = 0
    messages_migrated: int = 0
    amqp_operations: int = 0  # AMQP commands sent (declare, bind, delete...), for the benchmark


class ApplyFailed(BrokerError):
    """The broker refused a change mid-apply; says what had been applied before."""


Handler = Callable[["Executor", tuple[Change, ...]], None]
HANDLERS: dict[tuple[Action, str], Handler] = {}  # (action, kind name) -> handler, filled by provisioner/handlers/


def implements(kind: Kind, *actions: Action) -> Callable[[Handler], Handler]:
    """Register the decorated function as what the executor runs for ``actions`` of ``kind``."""

    def register(handler: Handler) -> Handler:
        for action in actions:
            assert action in kind.actions, f"{kind.name} has no {action.name} phase"
            assert (action, kind.name) not in HANDLERS, f"a second handler for {action.name} {kind.name}"
            HANDLERS[(action, kind.name)] = handler
        return handler

    return register


class Executor:
    """Runs a plan phase by phase; talks to the broker, nothing else does in an apply."""

    def __init__(
        self,
        desired: Topology,
        endpoints: Endpoints,
        management: Management,
        options: ApplyOptions,
        progress: Progress | None = None,
    ) -> None:
        self.desired, self.endpoints, self.management = desired, endpoints, management
        self.options, self.progress = options, progress
        self.report = ApplyReport()
        self._amqp: dict[str, Amqp] = {}

    def amqp(self, vhost: str) -> Amqp:
        if vhost not in self._amqp:
            self._amqp[vhost] = Amqp(self.endpoints, vhost, self.management.backoff)
        return self._amqp[vhost]

    def held(self, vhost: str, names: list[str]) -> dict[str, Held]:
        """What queues hold now, ready and unacknowledged (broker/held.py): the last look before a delete."""
        return read_held(self.endpoints, self.management, vhost, names, consumers=names)

    @property
    def operations_sent(self) -> int:
        return sum(client.operations_sent for client in self._amqp.values())

    def execute(self, plan: Plan) -> ApplyReport:
        self.report.plan = plan
        for action, kind in PHASES:
            changes = plan.of(action, kind)
            if changes:
                with phase("execute"):
                    self.run(action, kind, changes)
        self.report.amqp_operations = self.operations_sent
        self.report.done += add_members(self.management, plan.cluster)
        return self.report

    def run(self, action: Action, kind: str, changes: tuple[Change, ...]) -> None:
        try:
            HANDLERS[(action, kind)](self, changes)
        except OperationFailed as error:
            self.report.done += error.done
            raise ApplyFailed(f"{error} (after {self.report.done} change(s) applied)") from error
        except BrokerError as error:
            raise ApplyFailed(f"{error} (after {self.report.done} change(s) applied)") from error

    def declare_all(self, verb: str, resources: list[Exchange | Queue | Binding]) -> None:
        """Send one AMQP command per object, pipelined per vhost; counts what completed."""
        by_vhost: dict[str, list[Operation]] = {}
        for resource in resources:
            # if-empty guards classic queues; quorum queues refuse it (540), their counts were checked before
            if_empty = not self.options.force and isinstance(resource, Queue) and resource.type == "classic"
            by_vhost.setdefault(resource.vhost, []).append(Operation(verb, resource, if_empty=if_empty))
        for vhost, operations in by_vhost.items():
            self.report.done += self.amqp(vhost).execute(operations, self.options.workers, self.progress)

    def mark_done(self, count: int = 1) -> None:
        """Count changes made through the management API (AMQP commands count themselves)."""
        self.report.done += count
        if self.progress is not None:
            self.progress(count)
