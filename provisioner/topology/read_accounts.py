"""How a topology file declares users, permissions, topic permissions and vhost settings and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import Problem
from provisioner.parameters.load import ParametersReader
from provisioner.patterns import regex_problem
from provisioner.topology.accounts import (
    SHA256,
    Accounts,
    Credential,
    Key,
    Permission,
    TopicPermission,
    User,
    VhostLimit,
    VhostSettings,
    hash_problem,
)
from provisioner.topology.documents import Document

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
        algorithm = spec.get("hashing_algorithm", SHA256)
        if "password_hash" in spec:
            refused = hash_problem(spec["password_hash"], algorithm)
            if refused:
                self.problems.append(document.problem([*path, "password_hash"], refused))
                return
        credential = Credential(spec.get("password"), spec.get("password_hash"), algorithm)
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
            self._patterns(document, [*base, "permissions", user], spec, ("configure", "write", "read"))
            permission = Permission(vhost, user, spec["configure"], spec["write"], spec["read"])
            self._add(document, [*base, "permissions", user], permission)
        for user, entries in (body.get("topic_permissions") or {}).items():
            for index, spec in enumerate(entries or []):
                self._patterns(document, [*base, "topic_permissions", user, index], spec, ("write", "read"))
                topic = TopicPermission(vhost, user, spec["exchange"], spec["write"], spec["read"])
                self._add(document, [*base, "topic_permissions", user, index], topic)
        for name, value in (body.get("limits") or {}).items():
            self._add(document, [*base, "limits", name], VhostLimit(vhost, name, value))

    def _patterns(self, document: Document, path: list[Any], spec: dict[str, Any], fields: tuple[str, ...]) -> None:
        """Permission patterns are regular expressions the broker compiles (it refuses the others)."""
        for name in fields:
            refused = regex_problem(spec[name]) if isinstance(spec.get(name), str) else None
            if refused:
                self.problems.append(document.problem([*path, name], f"{name} pattern {spec[name]!r} {refused}"))

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
