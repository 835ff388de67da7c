"""Where the broker is: the AMQP and management URLs, with credentials kept out of every message."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, unquote, urlsplit

from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    import pika

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
            f"password (# as %23, / as %2F, ? as %3F, @ as %40, : as %3A, % as %25) and give a numeric port"
        ) from None
    return parts


def url_secrets(url: str) -> tuple[str, ...]:
    """Every string the URL may hold as its password, also when it cannot be parsed.

    A password equal to its user name (guest/guest) is no secret: messages name the user.
    """
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


@dataclass(frozen=True)
class Endpoints:
    """The broker's two doors; the vhost always comes from the topology, never from the URL."""

    amqp_url: str = DEFAULT_AMQP_URL
    management_url: str = DEFAULT_MANAGEMENT_URL
    ca_file: str | None = None

    @classmethod
    def from_environment(cls) -> Endpoints:
        return cls(
            amqp_url=os.environ.get("PROVISION_AMQP_URL", DEFAULT_AMQP_URL),
            management_url=os.environ.get("PROVISION_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL),
            ca_file=os.environ.get("PROVISION_CA_FILE") or None,
        )

    def check(self) -> Endpoints:
        """Self, once both URLs parse; BadUrl otherwise (before anything talks to the broker)."""
        split_url(self.amqp_url, "AMQP")
        split_url(self.management_url, "management")
        return self

    @property
    def amqp_user(self) -> str:
        return unquote(urlsplit(self.amqp_url).username or "guest")

    @property
    def management_auth(self) -> tuple[str, str]:
        """User and password for the management API; the AMQP user's when its URL names none."""
        parts = urlsplit(self.management_url)
        if parts.username is None:  # fall back to the AMQP user: one set of credentials is common
            amqp = urlsplit(self.amqp_url)
            return unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
        return unquote(parts.username), unquote(parts.password or "")

    @property
    def verify(self) -> str | bool:
        """What requests verifies the management API's certificate with: the CA file, or the system's."""
        return self.ca_file or True

    @property
    def management_base(self) -> str:
        """scheme://host:port/path of the management API, without credentials."""
        parts = urlsplit(self.management_url)
        return f"{parts.scheme}://{netloc(parts.hostname or 'localhost', parts.port)}{parts.path.rstrip('/')}"

    def amqp_parameters(self, vhost: str) -> pika.URLParameters:
        """Connection parameters for one vhost (TLS with the CA file for amqps://)."""
        import ssl  # here, not at the top: the CLI imports this module for its defaults alone

        import pika

        parts = urlsplit(self.amqp_url)
        url = parts._replace(path="/" + quote(vhost, safe="")).geturl()
        parameters = pika.URLParameters(url)
        parameters.client_properties = {"connection_name": "provisioner"}
        if parts.scheme == "amqps":
            context = ssl.create_default_context(cafile=self.ca_file)
            parameters.ssl_options = pika.SSLOptions(context, parts.hostname)
        return parameters
