"""`provision apply` on a terminal: show the plan, ask before the first write (--yes skips; no terminal never asks)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    from provisioner.plan import Plan


class ApplyCancelled(ProvisionerError):
    """The person at the terminal did not answer yes; nothing was changed."""


def asks(yes: bool) -> bool:
    """Whether this apply asks: only a person at a terminal (standard input) can answer, and --yes answered."""
    return not yes and sys.stdin.isatty()


class Confirmation:
    """Asks once per distinct plan: again under the lock only when the plan changed while apply waited."""

    QUESTION = "Apply these changes to the broker? Only 'yes' applies"

    def __init__(self, ask: bool, show: Callable[[Plan], None], show_person: Callable[[Plan], None]) -> None:
        # the person reads the terminal: with standard output redirected (apply > log) the plan goes to stderr
        self.to_terminal = sys.stdout.isatty()
        self.ask, self.show = ask, show if self.to_terminal else show_person
        self.confirmed = ""

    def __call__(self, plan: Plan) -> None:
        if not self.ask or _key(plan) == self.confirmed:
            return
        if self.confirmed:
            click.echo("The broker changed while apply waited for its lock; the plan is now:", err=True)
        self.show(plan)
        answer = click.prompt(self.QUESTION, default="", show_default=False, err=True)
        if answer.strip().lower() != "yes":
            raise ApplyCancelled("apply cancelled: the answer was not 'yes'; nothing was changed")
        self.confirmed = _key(plan)

    def shown(self, plan: Plan) -> bool:
        """Whether this very plan was shown on standard output (and confirmed), so apply does not print it twice."""
        return self.to_terminal and bool(self.confirmed) and _key(plan) == self.confirmed


def _key(plan: Plan) -> str:
    from provisioner.saved_plan import changes_digest

    return changes_digest(plan, ())
