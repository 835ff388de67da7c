"""Where the broker is: the shared broker options, and the clients built from them (env by default)."""

from __future__ import annotations

from functools import wraps
from typing import Any

import click

from provisioner.broker.clients import BrokerClients as Broker
from provisioner.broker.endpoints import DEFAULT_AMQP_URL, DEFAULT_MANAGEMENT_URL
from provisioner.cli.output import F, remember_secrets, reports_errors


def broker_options(command: F) -> F:
    """--amqp-url, --management-url, --ca-file, --retry-seconds: where the broker is (env by default)."""
    options = [
        click.option(
            "--amqp-url",
            envvar="PROVISION_AMQP_URL",
            default=DEFAULT_AMQP_URL,
            show_default="amqp://guest:***@localhost:5672/",
            help="AMQP URL (env PROVISION_AMQP_URL); amqps:// for TLS. Its vhost is ignored: the topology names it. "
            "A cluster's nodes comma-separated: the first that answers is used (a comma in a password: %2C).",
        ),
        click.option(
            "--management-url",
            envvar="PROVISION_MANAGEMENT_URL",
            default=DEFAULT_MANAGEMENT_URL,
            show_default="http://guest:***@localhost:15672",
            help="Management API URL (env PROVISION_MANAGEMENT_URL); https:// for TLS. "
            "Several nodes comma-separated, in the order of --amqp-url.",
        ),
        click.option(
            "--ca-file",
            envvar="PROVISION_CA_FILE",
            type=click.Path(exists=True, dir_okay=False),
            help="CA bundle for amqps:// and https:// (env PROVISION_CA_FILE).",
        ),
        click.option(
            "--retry-seconds",
            default=15.0,
            show_default=True,
            type=click.FloatRange(0),
            help="How long transient faults (connection refused or reset, 5xx) are retried.",
        ),
    ]

    @wraps(command)
    def wrapper(
        *args: Any, amqp_url: str, management_url: str, ca_file: str | None, retry_seconds: float, **kwargs: Any
    ) -> Any:
        remember_secrets(amqp_url, management_url)
        return command(*args, broker=_clients(amqp_url, management_url, ca_file, retry_seconds), **kwargs)

    decorated: Any = reports_errors(wrapper)  # a URL that does not parse is one line too
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def _clients(amqp_url: str, management_url: str, ca_file: str | None, retry_seconds: float) -> Broker:
    from provisioner.broker.endpoints import Endpoints
    from provisioner.broker.management import Management
    from provisioner.broker.retry import Backoff

    endpoints = Endpoints(amqp_url, management_url, ca_file).check()
    backoff = Backoff(attempts=1 + int(retry_seconds > 0) * 7, deadline=retry_seconds, failover=endpoints.nodes > 1)
    return Broker(endpoints, Management(endpoints, backoff=backoff))
