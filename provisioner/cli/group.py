"""The `provision` click group: global options, and the secrets and log handler every command starts with."""

from __future__ import annotations

import os
from typing import Any

import click

from provisioner.cli.output import _SECRETS, _install_log_handler, remember_secrets
from provisioner.version import __version__


class UsageLine(click.ClickException):
    """A usage error (an unknown option, a missing file argument) as one line, exiting 1, not click's 2.

    2 is what ``drift``, ``plan --detailed-exitcode`` and ``render --check``
    answer for "changes present": a CI job with a mistyped option must not read
    as drift (docs/exit-codes.md).
    """

    exit_code = 1

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message())
        self.command_path = error.ctx.command_path if error.ctx is not None else "provision"

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()} ('{self.command_path} --help' shows the usage)", err=True)


class _Group(click.Group):
    """Click's group, with usage errors as :class:`UsageLine`."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            raise UsageLine(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise UsageLine(error) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="provision")  # no importlib.metadata: it costs 0.1 s
def main() -> None:
    """Provision RabbitMQ topologies for Celery from one declarative file."""
    _SECRETS.clear()
    remember_secrets(*(os.environ.get(name, "") for name in ("PROVISION_AMQP_URL", "PROVISION_MANAGEMENT_URL")))
    _install_log_handler()
