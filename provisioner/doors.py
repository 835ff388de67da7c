"""Both doors on every run: a converged apply or drift still proves the AMQP credentials.

The management credentials are proven by the read every plan starts with; AMQP
is opened only when there is something to declare or count, so without this a
wrong AMQP password in a deploy secret went unnoticed until the next real change.
The login runs in the background while the plan reads the broker, so a no-op run
pays for it (importing pika, one connection) only where it waits anyway.
"""

from __future__ import annotations

import threading

from provisioner.broker.amqp import check_login
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.management import Management, tag_list
from provisioner.broker.retry import Backoff
from provisioner.errors import BrokerError
from provisioner.kinds.vhost import VHOST
from provisioner.plan import Action, Plan
from provisioner.safety import WRITE_TAGS
from provisioner.topology.model import Topology


class AmqpDoor:
    """One AMQP connection to ``vhost`` opened and closed in the background, writing nothing."""

    def __init__(self, endpoints: Endpoints, vhost: str, backoff: Backoff) -> None:
        self.endpoints, self.vhost, self.backoff = endpoints, vhost, backoff
        self.opened = False  # the vhost opened (False when the broker says it does not exist, or no access)
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._login, name="amqp-door", daemon=True)
        self._thread.start()

    def _login(self) -> None:
        try:
            self.opened = check_login(self.endpoints.amqp_parameters(self.vhost), self.backoff, vhost_exists=False)
        except BaseException as error:  # handed to verdict(), in the caller's thread
            self.failure = error

    def wait(self) -> None:
        self._thread.join()

    def verdict(self, plan: Plan) -> None:
        """BrokerError when AMQP refused the credentials, or the vhost (one the plan does not create)."""
        self.wait()
        if isinstance(self.failure, BrokerError):
            raise BrokerError(f"{self.failure}; nothing was changed") from self.failure
        if self.failure is not None:
            raise self.failure
        created = {change.name for change in plan.of(Action.CREATE, VHOST.name)}
        if not self.opened and self.vhost not in created:
            try:  # again, for the broker's words about the vhost
                check_login(self.endpoints.amqp_parameters(self.vhost), self.backoff)
            except BrokerError as error:
                raise BrokerError(f"{error}; nothing was changed") from error


def first_vhost(desired: Topology) -> str | None:
    """The vhost the door is tried on: one connection, whatever the number of vhosts."""
    return min((v.name for v in desired.vhosts), default=None)


def check_amqp_door(plan: Plan, desired: Topology, endpoints: Endpoints, backoff: Backoff) -> None:
    """One AMQP connection opened and closed now: BrokerError when the broker refuses it."""
    vhost = first_vhost(desired)
    if vhost is not None:
        AmqpDoor(endpoints, vhost, backoff).verdict(plan)


def check_doors(plan: Plan, endpoints: Endpoints, management: Management) -> None:
    """Before the first write: AMQP takes the credentials and the management user has the tags the writes need.

    The plan's read already proved the management credentials; this costs one
    AMQP login per vhost and one GET /api/whoami, and writes nothing.
    """
    created = {change.name for change in plan.of(Action.CREATE, VHOST.name)}
    try:
        for vhost in sorted({change.vhost for change in plan.changes if change.vhost} | created):  # "": users
            check_login(endpoints.amqp_parameters(vhost), management.backoff, vhost_exists=vhost not in created)
        tags = set(tag_list(management.whoami()))
        for kind, allowed in WRITE_TAGS.items():
            if any(change.kind == kind for change in plan.changes) and not tags & set(allowed):
                user = endpoints.management_auth[0]
                raise BrokerError(
                    f"user {user!r} of the management API (tags: {', '.join(sorted(tags)) or 'none'}) may not "
                    f"write the plan's {kind} changes: it needs the {' or '.join(repr(tag) for tag in allowed)} tag"
                )
    except BrokerError as error:
        raise BrokerError(f"{error}; nothing was changed") from error
