"""The two clients every broker command uses, typed, in one value (no imports of pika or requests here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.broker.endpoints import Endpoints
    from provisioner.broker.management import Management


@dataclass(frozen=True)
class BrokerClients:
    """Where the broker is (AMQP and management URLs, TLS) and the management API client on it."""

    endpoints: Endpoints
    management: Management
