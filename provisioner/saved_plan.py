"""Pure: a plan saved for review, and the checks that say whether it may still be applied as it is.

A saved plan is a commitment, not a script: ``apply PLAN`` plans again from the
same files and the live broker, and runs that plan only when everything the
saved one was made from is unchanged (the files' bytes, the tool's version, the
broker, every live object the plan read, every credential) and its changes are
exactly the saved ones. The file holds no secret: credentials are named by where
they come from and kept as a salted scrypt fingerprint, which cannot log in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.parameters.core import Uri
from provisioner.plan import Plan
from provisioner.redact import redact
from provisioner.topology.accounts import Credential as Credential_

KEY = "provisioner_plan"  # the first key of every saved plan: how apply tells a plan from a topology file
FORMAT = 1
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # about 16 MiB and 50 ms per credential


class StalePlan(ProvisionerError):
    """The saved plan no longer describes what apply would do; nothing was changed."""


class NotAPlan(ProvisionerError):
    """The file given as a saved plan is not one this tool can read."""


@dataclass(frozen=True)
class Credential:
    """Where one secret of the topology comes from, and its one-way fingerprint (never the secret)."""

    what: str  # "user 'app' password"
    source: str  # "${APP_PASSWORD} in topologies/shop.yaml"
    fingerprint: str


@dataclass(frozen=True)
class SavedPlan:
    """What ``plan -o`` writes: the plan for people, and what it was made from, for apply to check."""

    tool_version: str
    files: tuple[tuple[str, str], ...]  # (path as given, sha256 of its bytes), in load order
    options: Mapping[str, Any]  # prune, migrate, force, ignore: what the apply of this plan may do
    broker: Mapping[str, str]  # cluster_name, rabbitmq_version
    live: Mapping[str, str]  # what was read ("vhost 'shop'", "accounts") -> fingerprint of it
    salt: str
    credentials: tuple[Credential, ...]
    changes: str  # sha256 of the changes in canonical form (counts left out: messages keep arriving)
    plan: Mapping[str, Any]  # plan.to_json(), redacted: what reviewers read

    def to_text(self) -> str:
        document: dict[str, Any] = {KEY: FORMAT}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "credentials":
                value = [dataclasses.asdict(c) for c in value]
            elif item.name == "files":
                value = [{"path": path, "sha256": digest} for path, digest in value]
            document[item.name] = value
        return json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"


def looks_like_saved_plan(head: bytes) -> bool:
    """Whether a file's first bytes are a saved plan's (JSON whose first key is KEY)."""
    return head.lstrip().startswith(b"{") and f'"{KEY}"'.encode() in head[:64]


def read_saved(text: str, name: str) -> SavedPlan:
    """The saved plan in ``text``; NotAPlan in one line when it is not one."""
    try:
        document = json.loads(text)
        if document.get(KEY) != FORMAT:
            raise NotAPlan(f"{name} is a saved plan of format {document.get(KEY)!r}; this provisioner reads {FORMAT}")
        saved = SavedPlan(
            tool_version=str(document["tool_version"]),
            files=tuple((str(f["path"]), str(f["sha256"])) for f in document["files"]),
            options=dict(document["options"]),
            broker=dict(document["broker"]),
            live=dict(document["live"]),
            salt=str(document["salt"]),
            credentials=tuple(Credential(**c) for c in document["credentials"]),
            changes=str(document["changes"]),
            plan=dict(document["plan"]),
        )
        edited = rows_digest(saved.plan["changes"]) != saved.changes
    except NotAPlan:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise NotAPlan(f"{name} is not a saved plan this provisioner can read ({type(error).__name__})") from None
    if edited:  # what reviewers read is what is applied: the readable changes are the digest's
        raise NotAPlan(f"{name} was edited: its changes do not match the digest they were saved with")
    return saved


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint_of(document: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, dataclasses as dicts)."""
    text = json.dumps(document, sort_keys=True, default=_plain, separators=(",", ":"), ensure_ascii=False)
    return sha256_bytes(text.encode("utf-8"))


def _plain(value: Any) -> Any:
    if isinstance(value, (Credential_, Uri)):
        return repr(value)  # "(hidden)", a URI masked: a fast hash over a secret could be searched offline
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__kind__": type(value).__name__} | {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def credential_fingerprint(secret: str, salt: str, what: str) -> str:
    """scrypt of the secret with the plan's salt and the credential's name: detects a change, cannot log in."""
    derived = hashlib.scrypt(secret.encode("utf-8"), salt=bytes.fromhex(salt) + what.encode("utf-8"), **SCRYPT)
    return "scrypt$" + derived.hex()


def changes_digest(plan: Plan, secrets: Iterable[str]) -> str:
    """The changes as a set, redacted, without message counts: what must be the same at apply."""
    hidden = frozenset(secrets)
    return rows_digest(redacted(change.to_json(), hidden) for change in plan.changes)


def rows_digest(rows: Iterable[Any]) -> str:
    """sha256 of changes as JSON rows (a saved plan's own, or a fresh plan's redacted), in canonical form."""
    texts = sorted(fingerprint_text(_comparable(row)) for row in rows)
    return sha256_bytes("\n".join(texts).encode("utf-8"))


def fingerprint_text(document: Any) -> str:
    return json.dumps(document, sort_keys=True, default=_plain, separators=(",", ":"), ensure_ascii=False)


def _comparable(row: Any) -> Any:
    """A change's row without what moves on its own: message counts, and the reason (display text)."""
    if not isinstance(row, dict):
        return row
    row = {key: value for key, value in row.items() if key not in ("messages", "consumers", "reason")}
    if isinstance(row.get("parked"), dict):
        row["parked"] = {"name": row["parked"].get("name")}
    return row


def redacted(value: Any, hidden: frozenset[str]) -> Any:
    """``value`` as JSON data with every secret masked in every string, keys included (never the syntax).

    What is not JSON data is written as its repr: a Credential is "(hidden)", a URI is masked.
    """
    if isinstance(value, str):
        return redact(value, hidden)
    if isinstance(value, dict):
        return {redact(str(key), hidden): redacted(item, hidden) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(item, hidden) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(repr(value), hidden)


def stale_files(saved: SavedPlan, current: Mapping[str, str | None]) -> str:
    """The first file whose bytes differ from the saved digest ("" when none); ``current``: path -> sha256."""
    for path, digest in saved.files:
        now = current.get(path)
        if now is None:
            return f"topology file {path} is gone"
        if now != digest:
            return f"topology file {path} changed"
    return ""


def stale_live(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """What the plan read that reads differently now, by name."""
    return [what for what in sorted(saved.keys() | current.keys()) if saved.get(what) != current.get(what)]


def stale_credentials(saved: SavedPlan, current: Mapping[str, str]) -> list[str]:
    """The credentials whose secret changed (or appeared, or went); ``current``: what -> secret."""
    before = {c.what: c for c in saved.credentials}
    changed = []
    for what in sorted(before.keys() | current.keys()):
        if what not in before or what not in current:
            changed.append(what)
        elif credential_fingerprint(current[what], saved.salt, what) != before[what].fingerprint:
            changed.append(f"{what} (from {before[what].source})")
    return changed


def refusal(reason: str, done: str = "nothing was changed") -> StalePlan:
    """The one line apply says when a saved plan may not run."""
    return StalePlan(
        f"refusing to apply the saved plan: {reason} since the plan was saved; {done} "
        "(run `provision plan -o` again and review the new plan)"
    )
