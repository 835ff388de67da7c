"""Users, permissions, topic permissions and vhost settings and limits: the model and how a file declares them.

A password lives only in memory, inside a Credential whose text is always
``(hidden)``: no plan, JSON document, error or log line can show it. Whether a
password changed is decided by hashing it with the live hash's salt and algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from provisioner.errors import Problem
from provisioner.parameters.core import Parameter
from provisioner.parameters.load import Parameters, ParametersReader
from provisioner.topology.load import Document

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
        return ("user", self.name)

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
        return ("permission", self.vhost, self.user)

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
        return ("topic_permission", self.vhost, self.user, self.exchange)

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
        return ("vhost_limit", self.vhost, self.name)

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


VHOST_KEYS = {"permissions": "permission", "topic_permissions": "topic_permission", "limits": "vhost_limit"}


@dataclass
class AccountsReader:
    """Collects the accounts of every document; the same object twice is a problem at its line."""

    problems: list[Problem] = field(default_factory=list)
    users: dict[str, User] | None = None
    exclusive: bool = False
    objects: dict[Key, Any] = field(default_factory=dict)
    owned: set[tuple[str, str]] = field(default_factory=set)
    parameters: ParametersReader = field(default_factory=ParametersReader)

    def add_document(self, document: Document, bodies: list[tuple[str, dict[str, Any], tuple[Any, ...]]]) -> None:
        data = document.data
        if "vhosts" in data:
            for clash in ("description", "default_queue_type", *VHOST_KEYS):
                if clash in data:
                    self.problems.append(
                        document.problem(
                            [clash], f"'{clash}' cannot stand beside 'vhosts'; move it under a vhost", at_key=True
                        )
                    )
        if "users" in data:
            self.users = {} if self.users is None else self.users
            for name, spec in (data["users"] or {}).items():
                self._user(document, name, spec or {})
        self.exclusive = self.exclusive or bool(data.get("users_exclusive"))
        for vhost, body, base in bodies:
            self._vhost(document, vhost, body, base)
        self.parameters.add_document(document, bodies)
        self.problems += self.parameters.problems
        self.parameters.problems = []

    def _user(self, document: Document, name: str, spec: dict[str, Any]) -> None:
        assert self.users is not None
        path = ["users", name]
        if name in self.users:
            self.problems.append(document.problem(path, f"user {name!r} is defined twice", at_key=True))
            return
        if ("password" in spec) == ("password_hash" in spec):
            self.problems.append(
                document.problem(
                    path, f"user {name!r} needs either password (from ${{VAR}}) or password_hash", at_key=True
                )
            )
            return
        if "hashing_algorithm" in spec and "password_hash" not in spec:
            self.problems.append(
                document.problem([*path, "hashing_algorithm"], "hashing_algorithm goes with password_hash")
            )
        credential = Credential(spec.get("password"), spec.get("password_hash"), spec.get("hashing_algorithm", SHA256))
        tags = tuple(sorted(set(spec.get("tags") or ())))
        self.users[name] = User(name, tags, dict(sorted((spec.get("limits") or {}).items())), credential)

    def _vhost(self, document: Document, vhost: str, body: dict[str, Any], base: tuple[Any, ...]) -> None:
        if "description" in body or "default_queue_type" in body:
            settings = VhostSettings(vhost, body.get("description"), body.get("default_queue_type"))
            self._add(document, [*base, "description" if "description" in body else "default_queue_type"], settings)
        for key, kind in VHOST_KEYS.items():
            if key in body:
                self.owned.add((vhost, kind))
        for user, spec in (body.get("permissions") or {}).items():
            permission = Permission(vhost, user, spec["configure"], spec["write"], spec["read"])
            self._add(document, [*base, "permissions", user], permission)
        for user, entries in (body.get("topic_permissions") or {}).items():
            for index, spec in enumerate(entries or []):
                topic = TopicPermission(vhost, user, spec["exchange"], spec["write"], spec["read"])
                self._add(document, [*base, "topic_permissions", user, index], topic)
        for name, value in (body.get("limits") or {}).items():
            self._add(document, [*base, "limits", name], VhostLimit(vhost, name, value))

    def _add(self, document: Document, path: list[Any], resource: Any) -> None:
        if resource.key in self.objects:
            what = f"{resource.kind} {resource.name!r} in vhost {resource.vhost!r}"
            self.problems.append(document.problem(path, f"{what} is defined twice"))
            return
        self.objects[resource.key] = resource

    def accounts(self) -> Accounts:
        def of(cls: type) -> tuple[Any, ...]:
            return tuple(sorted((o for o in self.objects.values() if isinstance(o, cls)), key=lambda o: o.key))

        return Accounts(
            users=None
            if self.users is None and not self.exclusive
            else tuple(sorted((self.users or {}).values(), key=lambda u: u.key)),
            users_exclusive=self.exclusive,
            permissions=of(Permission),
            topic_permissions=of(TopicPermission),
            settings=of(VhostSettings),
            limits=of(VhostLimit),
            owned=frozenset(self.owned),
            parameters=self.parameters.parameters(),
        )
