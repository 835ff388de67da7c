"""The `provision` click group: global options, and the secrets and log handler every command starts with."""

from __future__ import annotations

import os

import click

from provisioner.cli.output import _SECRETS, _install_log_handler, remember_secrets
from provisioner.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="provision")  # no importlib.metadata: it costs 0.1 s
def main() -> None:
    """Provision RabbitMQ topologies for Celery from one declarative file."""
    _SECRETS.clear()
    remember_secrets(*(os.environ.get(name, "") for name in ("PROVISION_AMQP_URL", "PROVISION_MANAGEMENT_URL")))
    _install_log_handler()
