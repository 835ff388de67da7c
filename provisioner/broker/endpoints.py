"""Where the broker is: the AMQP and management URLs, with credentials kept out of every message."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import pika

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_MANAGEMENT_URL = "http://guest:guest@localhost:15672"


def mask(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def where(url: str) -> str:
    """host:port of a URL, the only part of it an error message names."""
    parts = urlsplit(url)
    default = {"amqp": 5672, "amqps": 5671, "http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.hostname}:{parts.port or default}"


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

    @property
    def amqp_user(self) -> str:
        return unquote(urlsplit(self.amqp_url).username or "guest")

    @property
    def management_auth(self) -> tuple[str, str]:
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
        netloc = parts.hostname or "localhost"
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"

    def amqp_parameters(self, vhost: str) -> pika.URLParameters:
        """Connection parameters for one vhost (TLS with the CA file for amqps://)."""
        parts = urlsplit(self.amqp_url)
        url = parts._replace(path="/" + quote(vhost, safe="")).geturl()
        parameters = pika.URLParameters(url)
        parameters.client_properties = {"connection_name": "provisioner"}
        if parts.scheme == "amqps":
            context = ssl.create_default_context(cafile=self.ca_file)
            parameters.ssl_options = pika.SSLOptions(context, parts.hostname)
        return parameters

    def secrets(self) -> tuple[str, ...]:
        """Every password these endpoints hold, for scrubbing text that came from elsewhere."""
        found = [urlsplit(self.amqp_url).password, self.management_auth[1]]
        return tuple(unquote(s) for s in found if s)

    def scrub(self, text: str) -> str:
        """Text with every known password replaced by ***."""
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text
