"""Where the broker is: the AMQP and management URLs, with credentials kept out of every message.

Each URL option may list the nodes of a cluster, comma-separated; a run talks
to one node at a time and moves to the next that answers when it stops
(:class:`Failover`), so a comma inside a password must be percent-encoded (%2C).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, unquote, urlsplit

from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    import pika

log = logging.getLogger(__name__)

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_MANAGEMENT_URL = "http://guest:guest@localhost:15672"
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "http": 80, "https": 443}
SCHEMES = {"AMQP": ("amqp", "amqps"), "management": ("http", "https")}


class BadUrl(ProvisionerError):
    """A broker URL that cannot be parsed; the message names its scheme and host at most."""


def _host_of_broken(url: str) -> str:
    """The host of a URL urlsplit cannot take, guessed after the last @ (never the user's password)."""
    rest = url.partition("://")[2].rpartition("@")[2]
    if rest.startswith("["):
        return rest[: rest.find("]") + 1] if "]" in rest else ""
    for stop in ":/?#":
        rest = rest.partition(stop)[0]
    return rest


def split_url(url: str, kind: str) -> SplitResult:
    """The URL's parts; BadUrl, naming only scheme and host, when it is not a usable ``kind`` URL.

    A user name or password holding URL syntax (``#/?@[]``) unescaped moves the
    parser's idea of where the host is: such a URL is refused, never guessed at.
    """
    scheme = url.partition("://")[0] if "://" in url else ""
    allowed = SCHEMES[kind]
    if scheme.lower() not in allowed:
        shown = f"'{scheme}'" if scheme.isalnum() and len(scheme) < 10 else "none"
        raise BadUrl(f"the {kind} URL has scheme {shown}; it must start with {' or '.join(s + '://' for s in allowed)}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        rest = url[len(parts.scheme) + 3 + len(parts.netloc) :]
        if not parts.hostname or "@" in rest:
            raise ValueError
    except ValueError:
        host = _host_of_broken(url)
        raise BadUrl(
            f"the {kind} URL ({scheme}://{host or '?'}) cannot be parsed: percent-encode the user name and "
            f"password (# as %23, / as %2F, ? as %3F, @ as %40, : as %3A, % as %25, a comma as %2C) "
            f"and give a numeric port"
        ) from None
    return parts


def split_urls(text: str, kind: str) -> tuple[str, ...]:
    """The URLs of a comma-separated list, each checked; BadUrl naming scheme and host at most.

    A piece without a scheme is a comma inside a password, not between URLs:
    the whole text is refused as one URL that does not parse.
    """
    pieces = tuple(piece.strip() for piece in text.split(","))
    if len(pieces) > 1 and not all("://" in piece for piece in pieces):
        split_url(text.replace(",", "#"), kind)  # refused, naming the host after the last @ (never the password)
    for piece in pieces:
        split_url(piece, kind)
    return pieces


def url_secrets(url: str) -> tuple[str, ...]:
    """Every string the URL (or comma-separated list of URLs) may hold as a password, also when it cannot be parsed.

    A password equal to its user name (guest/guest) is no secret: messages name the user.
    """
    pieces = url.split(",")
    if len(pieces) == 1:
        return _one_url_secrets(url)
    return tuple(sorted({secret for piece in (url, *pieces) for secret in _one_url_secrets(piece)}))


def _one_url_secrets(url: str) -> tuple[str, ...]:
    found: set[tuple[str, str]] = set()
    try:
        parts = urlsplit(url)
        found.add((parts.username or "", parts.password or ""))
    except ValueError:
        pass
    userinfo = url.partition("://")[2].rpartition("@")[0]  # a broken URL: everything before the last @
    for candidate in (userinfo, userinfo.split("/")[0]):
        user, _, password = candidate.partition(":")
        found.add((user, password))
    return tuple(sorted({password for user, password in found if password and unquote(password) != unquote(user)}))


def netloc(hostname: str, port: int | None) -> str:
    """host:port, with an IPv6 address in brackets."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"{host}:{port}" if port else host


def where(url: str) -> str:
    """host:port of a URL, the only part of it an error message names."""
    try:
        parts = urlsplit(url)
        return netloc(parts.hostname or "?", parts.port or DEFAULT_PORTS.get(parts.scheme))
    except ValueError:
        return _host_of_broken(url) or "?"


class Failover:
    """Which node of a list a run talks to now; the first to find another node that answers moves it, saying so once."""

    def __init__(self) -> None:
        self.current = 0
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, object]) -> Failover:
        return self  # one run, one choice: pika copies connection parameters, and with them this

    def order(self, count: int) -> list[int]:
        """The nodes to try: the current one, then the others in the order given, wrapping around."""
        start = self.current
        return [(start + step) % count for step in range(count)]

    def settle(self, node: int, left: str, used: str, reason: str) -> None:
        """``node`` answered: make it the current one, with one warning line when that is a change."""
        with self._lock:
            if node == self.current:
                return
            self.current = node
        log.warning("warning: node %s stopped answering (%s); using node %s from now on", left, reason, used)


@dataclass(frozen=True)
class Endpoints:
    """The broker's two doors (each one URL per node); the vhost always comes from the topology, never a URL."""

    amqp_url: str = DEFAULT_AMQP_URL
    management_url: str = DEFAULT_MANAGEMENT_URL
    ca_file: str | None = None
    failover: Failover = field(default_factory=Failover, compare=False, repr=False)

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        return tuple(piece.strip() for piece in self.amqp_url.split(","))

    @property
    def management_urls(self) -> tuple[str, ...]:
        return tuple(piece.strip() for piece in self.management_url.split(","))

    @property
    def nodes(self) -> int:
        """How many nodes the URLs name (one list may name one URL for every node)."""
        return max(len(self.amqp_urls), len(self.management_urls))

    def node_order(self) -> list[int]:
        return self.failover.order(self.nodes)

    def amqp_url_of(self, node: int | None = None) -> str:
        urls = self.amqp_urls
        return urls[self.failover.current if node is None else node] if len(urls) > 1 else urls[0]

    def management_url_of(self, node: int | None = None) -> str:
        urls = self.management_urls
        return urls[self.failover.current if node is None else node] if len(urls) > 1 else urls[0]

    def describe_node(self, node: int) -> str:
        """A node as warnings name it: its AMQP and management host:port, never a credential."""
        amqp, management = where(self.amqp_url_of(node)), where(self.management_url_of(node))
        return f"{amqp} (management {management})"

    def settle(self, node: int, error: BaseException | None) -> None:
        """``node`` answered; when it is not the current node, the run moves there (one warning line)."""
        if node != self.failover.current:
            left = self.describe_node(self.failover.current)
            reason = type(error).__name__ if error is not None else "no answer"
            self.failover.settle(node, left, self.describe_node(node), reason)

    @classmethod
    def from_environment(cls) -> Endpoints:
        return cls(
            amqp_url=os.environ.get("PROVISION_AMQP_URL", DEFAULT_AMQP_URL),
            management_url=os.environ.get("PROVISION_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL),
            ca_file=os.environ.get("PROVISION_CA_FILE") or None,
        )

    def check(self) -> Endpoints:
        """Self, once every URL parses and the lists pair up; BadUrl otherwise (before anything talks to the broker)."""
        amqp, management = split_urls(self.amqp_url, "AMQP"), split_urls(self.management_url, "management")
        if len(amqp) > 1 and len(management) > 1 and len(amqp) != len(management):
            raise BadUrl(
                f"the AMQP URLs name {len(amqp)} nodes and the management URLs {len(management)}: "
                f"give one of each per node, in the same order (or one URL for every node)"
            )
        return self

    @property
    def amqp_user(self) -> str:
        return unquote(urlsplit(self.amqp_url_of()).username or "guest")

    @property
    def management_auth(self) -> tuple[str, str]:
        return self.management_auth_of()

    def management_auth_of(self, node: int | None = None) -> tuple[str, str]:
        """User and password for a node's management API; the AMQP user's when its URL names none."""
        parts = urlsplit(self.management_url_of(node))
        if parts.username is None:  # fall back to the AMQP user: one set of credentials is common
            amqp = urlsplit(self.amqp_url_of(node))
            return unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
        return unquote(parts.username), unquote(parts.password or "")

    @property
    def verify(self) -> str | bool:
        """What requests verifies the management API's certificate with: the CA file, or the system's."""
        return self.ca_file or True

    @property
    def management_base(self) -> str:
        return self.management_base_of()

    def management_base_of(self, node: int | None = None) -> str:
        """scheme://host:port/path of a node's management API (the current one's by default), without credentials."""
        parts = urlsplit(self.management_url_of(node))
        return f"{parts.scheme}://{netloc(parts.hostname or 'localhost', parts.port)}{parts.path.rstrip('/')}"

    def amqp_parameters(self, vhost: str, node: int | None = None) -> pika.URLParameters:
        """Connection parameters for one vhost on a node (TLS with the CA file for amqps://).

        They remember these endpoints, so a connection opened with them (or a
        copy) moves to another node of the list when this one does not answer.
        """
        import ssl  # here, not at the top: the CLI imports this module for its defaults alone

        import pika

        from provisioner.broker.connect import node_parameters  # connect imports this module at its top

        node = self.failover.current if node is None else node
        parts = urlsplit(self.amqp_url_of(node))
        url = parts._replace(path="/" + quote(vhost, safe="")).geturl()
        parameters = node_parameters(url, self, node, vhost)
        parameters.client_properties = {"connection_name": "provisioner"}
        if parts.scheme == "amqps":
            context = ssl.create_default_context(cafile=self.ca_file)
            parameters.ssl_options = pika.SSLOptions(context, parts.hostname)
        return parameters
