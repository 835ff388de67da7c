"""`plan -o PLAN` and `apply PLAN`: the CLI side of saved plans (provisioner/saved_plan.py, saved_apply.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.broker.clients import BrokerClients as Broker
from provisioner.cli.output import _SECRETS, say
from provisioner.errors import ProvisionerError
from provisioner.options import ApplyOptions

if TYPE_CHECKING:
    from provisioner.apply import ApplyReport
    from provisioner.plan import Plan


def is_saved_plan(files: tuple[str, ...]) -> bool:
    """One argument that is a file starting like a saved plan: `apply PLAN` rather than `apply FILES`."""
    plans = [file for file in files if _starts_like_a_plan(file)]
    if plans and len(files) > 1:
        raise ProvisionerError(f"{plans[0]} is a saved plan: apply it alone (`provision apply {plans[0]}`)")
    return bool(plans)


def _starts_like_a_plan(file: str) -> bool:
    from provisioner.saved_plan import looks_like_saved_plan

    if not os.path.isfile(file):
        return False
    try:
        with open(file, "rb") as handle:
            return looks_like_saved_plan(handle.read(64))
    except OSError:
        return False


def save(
    files: tuple[str, ...],
    output: str,
    broker: Broker,
    prune: bool,
    migrate: bool,
    force: bool,
    ignore: tuple[str, ...],
) -> tuple[Plan, str | None]:
    """Plan, write the saved plan to ``output`` (never a secret in it); the plan to print, and why it was
    not saved when `apply PLAN` would refuse it (a replace without --migrate, a loss without --force)."""
    from provisioner.saved_apply import save_plan
    from provisioner.topology import load

    desired = load(files)
    _SECRETS.update(desired.accounts.passwords())
    options = ApplyOptions(prune=prune, migrate=migrate, force=force)
    plan, saved = save_plan(desired, broker.management, options, ignore, broker.endpoints)
    refusal = None if plan.problems else _apply_would_refuse(plan, options)
    if not plan.problems and refusal is None:
        _write(output, saved.to_text())
    return plan, refusal


def _apply_would_refuse(plan: Plan, options: ApplyOptions) -> str | None:
    """What `apply PLAN` would refuse with these options (safety.py), or None: a plan it refuses is not saved."""
    from provisioner.errors import UnsafeChange
    from provisioner.safety import refuse_unsafe

    try:
        refuse_unsafe(plan, options)
    except UnsafeChange as error:
        return str(error).split("\n", 1)[1]  # the reasons and the hint, without "refusing to apply"
    return None


def _write(output: str, text: str) -> None:
    """Write the whole file or nothing: a half-written plan is never read as a plan."""
    target = Path(output)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ProvisionerError(f"cannot write the plan to {output}: {error.strerror or error}") from None


def apply_file(
    path: str,
    broker: Broker,
    workers: int,
    lock_timeout: float,
    progress: Callable[[int], None],
    on_plan: Callable[[Plan], None],
) -> ApplyReport:
    """Apply the saved plan at ``path`` exactly, or refuse in one line before any write."""
    from provisioner.saved_apply import apply_saved
    from provisioner.saved_plan import read_saved

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProvisionerError(
            f"cannot read the saved plan {path}: {getattr(error, 'strerror', None) or error}"
        ) from None
    saved = read_saved(text, path)
    return apply_saved(saved, broker.management, broker.endpoints, workers, lock_timeout, progress, on_plan)


def refuse_flags_with_a_plan(**given: bool) -> None:
    """A saved plan fixes what its apply may do: the flags that would change it are refused."""
    flags = [f"--{name}" for name, value in given.items() if value]
    if flags:
        raise ProvisionerError(
            f"{', '.join(flags)} cannot change a saved plan: it applies with the options it was planned with "
            "(run `provision plan -o` again with them)"
        )


def report_saved(output: str, plan: Plan, refusal: str | None) -> None:
    if plan.problems:
        say(f"the plan was not saved to {output}: apply would refuse it", err=True)
    elif refusal is not None:
        say(f"error: the plan was not saved to {output}: `provision apply {output}` would refuse it:", err=True)
        for line in refusal.replace("\n(", "\n(plan -o again with the flag: ", 1).split("\n"):
            say(line, err=True)
    else:
        say(f"Saved the plan to {output}; `provision apply {output}` applies exactly these changes.", err=True)
