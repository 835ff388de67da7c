"""Saving a plan for review, and applying exactly that plan later (saved_plan.py holds the pure part).

``save_plan`` reads the broker once and records what the plan was made from.
``apply_saved`` checks the files, the tool's version and the credentials before
it talks to the broker, then the broker's identity and every live object the
plan read, then plans again and runs only a plan whose changes are the saved
ones, checked once more under the vhost locks. Any difference refuses in one
line before the first write. A plan applied once is stale the second time: the
objects it read changed (by its own apply), so it is refused; a saved plan with
no changes stays a no-op for as long as the broker and files stay as they were.
"""

from __future__ import annotations

import re
import secrets as random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import yaml

from provisioner.apply import ApplyOptions, ApplyReport, converge
from provisioner.broker import accounts as broker_accounts
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.live import read_live
from provisioner.broker.management import Management
from provisioner.kinds.vhost import VHOST
from provisioner.live_state import IncludeObject, LiveVhost, ignoring
from provisioner.plan import Plan
from provisioner.planning import make_plan
from provisioner.saved_plan import (
    Credential,
    SavedPlan,
    changes_digest,
    credential_fingerprint,
    fingerprint_of,
    redacted,
    refusal,
    sha256_bytes,
    stale_credentials,
    stale_files,
    stale_live,
)
from provisioner.topology import load
from provisioner.topology.model import Topology
from provisioner.version import __version__

ACCOUNTS = "users, permissions and vhost settings"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def save_plan(
    desired: Topology,
    management: Management,
    options: ApplyOptions,
    ignore: tuple[str, ...],
    endpoints: Endpoints,
) -> tuple[Plan, SavedPlan]:
    """Plan as ``plan`` does, and the SavedPlan that lets ``apply_saved`` run exactly it."""
    include = ignoring(ignore)
    plan, live = _plan_and_fingerprints(desired, management, endpoints, options.prune, include)
    salt = random.token_hex(16)
    found = secrets_of(desired)
    sources = _credential_sources(desired.sources)
    saved = SavedPlan(
        tool_version=__version__,
        files=tuple((path, _digest(path) or "") for path in desired.sources),
        options={"prune": options.prune, "migrate": options.migrate, "force": options.force, "ignore": list(ignore)},
        broker=_identity(management),
        live=live,
        salt=salt,
        credentials=tuple(
            Credential(
                what, sources.get(what, _source_default(what, desired)), credential_fingerprint(secret, salt, what)
            )
            for what, secret in sorted(found.items())
        ),
        changes=changes_digest(plan, found.values()),
        plan=redacted(plan.to_json(), frozenset(found.values())),
    )
    return plan, saved


def apply_saved(
    saved: SavedPlan,
    management: Management,
    endpoints: Endpoints,
    workers: int,
    lock_timeout: float,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    environ: dict[str, str] | None = None,
) -> ApplyReport:
    """Apply the saved plan's changes and nothing else, or raise StalePlan before the first write."""
    desired, found = _unchanged_here(saved, environ)
    if dict(saved.broker) != _identity(management):
        raise refusal(f"the broker changed ({_named(saved.broker)} -> {_named(_identity(management))})")
    options = _options(saved, workers, lock_timeout)
    include = options.include_object or ignoring(())
    plan, live = _plan_and_fingerprints(desired, management, endpoints, options.prune, include)
    differ = stale_live(saved.live, live)
    if differ:
        applied = plan.is_empty and bool(saved.plan.get("changes"))
        done = "nothing was changed; it matches the topology now: was this plan applied already?"
        raise refusal(f"the broker's {', '.join(differ)} changed", done if applied else "nothing was changed")
    if changes_digest(plan, found.values()) != saved.changes:
        raise refusal("the changes the topology needs changed")

    def exactly(whole: Plan) -> None:
        if changes_digest(whole, found.values()) != saved.changes:  # under the locks: the state moved meanwhile
            made = [change.name for change in whole.changes if change.kind == VHOST.name and change.before is None]
            done = f"only the plan's new vhost(s) {', '.join(map(repr, made))} were made" if made else ""
            raise refusal("the broker changed while apply waited for the vhost locks", done or "nothing was changed")
        if on_plan is not None:
            on_plan(whole)

    return converge(desired, endpoints, management, options, progress, exactly)


def _unchanged_here(saved: SavedPlan, environ: dict[str, str] | None) -> tuple[Topology, dict[str, str]]:
    """What needs no broker: the tool's version, the files' bytes, the credentials; the topology and its secrets."""
    if saved.tool_version != __version__:
        raise refusal(f"the tool's version changed ({saved.tool_version} -> {__version__})")
    changed = stale_files(saved, {path: _digest(path) for path, _ in saved.files})
    if changed:
        raise refusal(changed)
    desired = load([path for path, _ in saved.files], environ=environ)
    if tuple(desired.sources) != tuple(path for path, _ in saved.files):
        raise refusal("the set of topology files changed")
    found = secrets_of(desired)
    moved = stale_credentials(saved, found)
    if moved:
        raise refusal(f"the credential of {', '.join(moved)} changed")
    return desired, found


def _options(saved: SavedPlan, workers: int, lock_timeout: float) -> ApplyOptions:
    """What the saved plan allows (fixed when it was saved), with this run's workers and lock timeout."""
    return ApplyOptions(
        bool(saved.options.get("prune")),
        bool(saved.options.get("migrate")),
        bool(saved.options.get("force")),
        workers,
        lock_timeout,
        include_object=ignoring(tuple(saved.options.get("ignore") or ())),
    )


def _plan_and_fingerprints(
    desired: Topology, management: Management, endpoints: Endpoints, prune: bool, include: IncludeObject
) -> tuple[Plan, dict[str, str]]:
    """The plan, and a fingerprint of each live part it was made from (read once, before the plan)."""
    vhosts = [v.name for v in desired.vhosts]
    live = read_live(management, vhosts, desired, include)
    fingerprints = {f"vhost {name!r}": fingerprint_of(_vhost_objects(state)) for name, state in live.items()}
    if not desired.accounts.is_empty:
        accounts = broker_accounts.read_accounts(management, desired.accounts, vhosts)
        if accounts.users is not None and not desired.accounts.users_exclusive:  # other users are not the plan's
            named = {user.name for user in desired.accounts.users or ()}
            accounts = replace(accounts, users=tuple(user for user in accounts.users if user.name in named))
        fingerprints[ACCOUNTS] = fingerprint_of(accounts)

    def already_read(desired: Topology | None = None, include: IncludeObject | None = include) -> dict[str, LiveVhost]:
        return live  # the state the fingerprints were taken of

    plan = make_plan(desired, management, prune, endpoints, live_soon=already_read, include=include)
    return plan, fingerprints


def _vhost_objects(state: LiveVhost) -> dict[str, Any]:
    """What of a live vhost a plan depends on: whether it exists and its objects (never message counts)."""
    resources = sorted(state.topology.resources(), key=lambda resource: repr(resource.key))
    return {"exists": state.exists, "objects": resources, "external": state.topology.external_exchanges}


def secrets_of(desired: Topology) -> dict[str, str]:
    """Every secret the topology holds, by a name that says whose it is."""
    found: dict[str, str] = {}
    for user in desired.accounts.users or ():
        if user.credential.password is not None:
            found[f"user {user.name!r} password"] = user.credential.password
        elif user.credential.password_hash:
            found[f"user {user.name!r} password_hash"] = user.credential.password_hash
    for parameter in desired.accounts.parameters.objects:
        held = sorted(parameter.secrets())
        if held:
            where = f" in vhost {parameter.vhost!r}" if parameter.vhost else ""
            found[f"{parameter.kind} {parameter.name!r}{where} URI password"] = "\0".join(held)
    return found


def _credential_sources(files: Iterable[str]) -> dict[str, str]:
    """Where each user's password comes from, read from the files as written (before interpolation)."""
    sources: dict[str, str] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                document = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        users = document.get("users") if isinstance(document, dict) else None
        for name, spec in (users or {}).items() if isinstance(users, dict) else ():
            if not isinstance(spec, dict):
                continue
            for field in ("password", "password_hash"):
                if isinstance(spec.get(field), str):
                    sources[f"user {str(name)!r} {field}"] = f"{_variables(spec[field]) or 'written'} in {path}"
    return sources


def _variables(template: str) -> str:
    return ", ".join(f"${{{name}}}" for name in _VARIABLE.findall(template))


def _source_default(what: str, desired: Topology) -> str:
    return f"the topology's URI variables in {', '.join(desired.sources)}" if "URI" in what else "the topology"


def _identity(management: Management) -> dict[str, str]:
    """Which broker this is: its cluster's name and its version (never a URL, which may hold credentials)."""
    overview = management.overview()
    return {
        "cluster_name": str(overview.get("cluster_name") or ""),
        "rabbitmq_version": str(overview.get("rabbitmq_version") or ""),
    }


def _named(identity: Any) -> str:
    return f"cluster {identity.get('cluster_name')!r} RabbitMQ {identity.get('rabbitmq_version')}"


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return sha256_bytes(handle.read())
    except OSError:
        return None
