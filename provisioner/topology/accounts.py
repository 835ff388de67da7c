"""Users, permissions, topic permissions, vhost settings and limits: the model (read_accounts.py reads files).

A password lives only in memory, inside a Credential whose text is always
``(hidden)``: no plan, JSON document, error or log line can show it. Whether a
password changed is decided by hashing it with the live hash's salt and algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from provisioner.parameters.core import Parameter, Parameters

Key = tuple[str, ...]

SHA256 = "rabbit_password_hashing_sha256"
HASHES = {  # the broker's hashing module -> hashlib's name (hashlib is imported only to compare a password)
    SHA256: "sha256",
    "rabbit_password_hashing_sha512": "sha512",
    "rabbit_password_hashing_md5": "md5",
}
ADMINISTRATOR = "administrator"


@dataclass(frozen=True, repr=False)
class Credential:
    """A password (desired, from the environment) or a password hash (desired or live); never shown."""

    password: str | None = None
    password_hash: str | None = None
    hashing_algorithm: str = SHA256

    def __repr__(self) -> str:
        return "(hidden)"

    __str__ = __repr__

    def matches(self, live: Credential) -> bool:
        """Whether the live hash is this credential: a password is hashed with the live salt and algorithm."""
        if self.password is None:
            return (self.password_hash, self.hashing_algorithm) == (live.password_hash, live.hashing_algorithm)
        return password_matches(self.password, live.password_hash or "", live.hashing_algorithm)


# The bytes of a stored hash: a 4-byte salt and the digest of each hashing module.
HASH_BYTES = {SHA256: 4 + 32, "rabbit_password_hashing_sha512": 4 + 64, "rabbit_password_hashing_md5": 4 + 16}


def hash_problem(password_hash: str, algorithm: str) -> str | None:
    """Why the broker refuses ``password_hash`` (not base64), or why no password could match it (its length)."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(password_hash.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return "password_hash is not base64 (the broker refuses it; copy it as the broker exports it)"
    expected = HASH_BYTES.get(algorithm)
    if expected is not None and len(raw) != expected:
        return (
            f"password_hash holds {len(raw)} bytes; {algorithm} stores {expected} (a 4-byte salt and the digest), "
            "so no password would ever match it"
        )
    return None


def password_matches(password: str, password_hash: str, algorithm: str) -> bool:
    """The broker's check: base64(salt(4 bytes) + H(salt + utf8 password)) with H the user's algorithm."""
    import base64
    import binascii
    import hashlib
    import hmac

    try:
        raw = base64.b64decode(password_hash, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) <= 4 or algorithm not in HASHES:
        return False
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(hashlib.new(HASHES[algorithm], salt + password.encode("utf-8")).digest(), digest)


@dataclass(frozen=True)
class User:
    """A cluster-wide user; the credential is compared by hashing, never by equality."""

    name: str
    tags: tuple[str, ...] = ()
    limits: dict[str, int] = field(default_factory=dict)
    credential: Credential = field(default_factory=Credential, compare=False)
    kind: ClassVar[str] = "user"
    vhost: ClassVar[str] = ""  # cluster-wide

    @property
    def key(self) -> Key:
        return (self.kind, self.name)

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class Permission:
    """What a user may configure, write and read in a vhost (regular expressions)."""

    vhost: str
    user: str
    configure: str
    write: str
    read: str
    kind: ClassVar[str] = "permission"

    @property
    def name(self) -> str:
        return self.user

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.user)

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class TopicPermission:
    """Which routing keys a user may write and read on one topic exchange of a vhost."""

    vhost: str
    user: str
    exchange: str
    write: str
    read: str
    kind: ClassVar[str] = "topic_permission"

    @property
    def name(self) -> str:
        return f"{self.user} on {self.exchange}"

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.user, self.exchange)

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class VhostSettings:
    """A vhost's metadata; None is a setting the topology leaves alone."""

    name: str
    description: str | None = None
    default_queue_type: str | None = None
    kind: ClassVar[str] = "vhost"

    @property
    def vhost(self) -> str:
        return self.name

    @property
    def key(self) -> Key:
        return ("vhost_settings", self.name)

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class VhostLimit:
    """One vhost limit (max-connections, max-queues)."""

    vhost: str
    name: str
    value: int
    kind: ClassVar[str] = "vhost_limit"

    @property
    def key(self) -> Key:
        return (self.kind, self.vhost, self.name)

    def __hash__(self) -> int:
        return hash(self.key)


AccountResource = User | Permission | TopicPermission | VhostSettings | VhostLimit | Parameter  # parameters/


@dataclass(frozen=True)
class Accounts:
    """What the topology says about users and vhost settings, and which kinds it owns where.

    A vhost owns its permissions, topic permissions or limits only when its body
    names that key (``permissions: {}`` owns them and wants none); users are
    managed when ``users:`` is present and pruned only with ``users_exclusive``.
    """

    users: tuple[User, ...] | None = None  # None: the topology says nothing about users
    users_exclusive: bool = False
    permissions: tuple[Permission, ...] = ()
    topic_permissions: tuple[TopicPermission, ...] = ()
    settings: tuple[VhostSettings, ...] = ()
    limits: tuple[VhostLimit, ...] = ()
    owned: frozenset[tuple[str, str]] = frozenset()  # (vhost, kind) the topology owns
    parameters: Parameters = field(default_factory=Parameters)  # operator policies, federation, shovels, ...

    @property
    def is_empty(self) -> bool:
        return self.users is None and not self.owned and not self.settings

    def passwords(self) -> set[str]:
        """The users' passwords and hashes, for the CLI's last line of defence (redact)."""
        found = {s for u in self.users or () for s in (u.credential.password, u.credential.password_hash) if s}
        return found | self.parameters.secrets()

    def owns(self, vhost: str, kind: str) -> bool:
        return (vhost, kind) in self.owned


@dataclass(frozen=True)
class LiveAccounts:
    """The broker's users (None: not read) and, per managed vhost, its settings, limits and permissions."""

    users: tuple[User, ...] | None = None
    settings: dict[str, VhostSettings] = field(default_factory=dict)  # only vhosts that exist
    limits: tuple[VhostLimit, ...] = ()
    permissions: tuple[Permission, ...] = ()
    topic_permissions: tuple[TopicPermission, ...] = ()
