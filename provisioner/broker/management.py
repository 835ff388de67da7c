"""The management HTTP API: reading a vhost in a constant number of requests, and the writes
AMQP cannot do (vhosts, permissions, policies)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import requests

from provisioner.broker.endpoints import Endpoints, where
from provisioner.broker.retry import DEFAULT_BACKOFF, Backoff, call_with_retry
from provisioner.errors import BrokerError


class ManagementError(BrokerError):
    """A management API request failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Management:
    """A small client of the management API that counts its requests (the benchmark prints them)."""

    def __init__(self, endpoints: Endpoints, timeout: float = 30.0, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.endpoints = endpoints
        self.backoff = backoff
        self.base = endpoints.management_base
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = endpoints.management_auth
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify = endpoints.verify
        self.requests_made = 0
        self.writes_made = 0

    def _request(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """One request, retried on transient faults; None for a 404 when ``missing_ok``."""

        def call() -> requests.Response:
            self.requests_made += 1
            if method != "GET":
                self.writes_made += 1
            try:
                response = self.session.request(
                    method, f"{self.base}/api/{path}", timeout=self.timeout, verify=self.verify, **kwargs
                )
            except requests.exceptions.SSLError as error:
                raise ManagementError(
                    f"TLS handshake with the management API at {self._where()} failed: {tls_reason(error)}"
                ) from error
            except requests.exceptions.RequestException as error:
                raise ManagementError(
                    f"cannot reach the management API at {self._where()} ({type(error).__name__}); "
                    f"is the rabbitmq_management plugin enabled? (rabbitmq-plugins enable rabbitmq_management)"
                ) from error
            if response.status_code >= 500:
                raise ManagementError(
                    f"management API at {self._where()} answered {response.status_code} to {method} /api/{path}",
                    response.status_code,
                ) from requests.HTTPError(response=response)
            return response

        response = call_with_retry(call, self.backoff, describe=f"{method} /api/{path}")
        if missing_ok and (response.status_code == 404 or "vhost_not_found" in response.text[:200]):
            return None  # 3.10 answers 400 vhost_not_found for the definitions of a missing vhost
        if response.status_code == 401:
            user = self.endpoints.management_auth[0]
            raise ManagementError(
                f"the management API at {self._where()} refused the credentials of user {user!r} "
                f"(401: a wrong password, or a user without the 'management' tag)",
                401,
            )
        if response.status_code == 403:
            user = self.endpoints.management_auth[0]
            raise ManagementError(
                f"user {user!r} may not {method} /api/{path} at {self._where()} (403; it needs the "
                f"'management' tag for reading and 'policymaker' or 'administrator' for vhosts and policies)",
                403,
            )
        if response.status_code >= 400:
            raise ManagementError(
                f"management API {method} /api/{path} answered {response.status_code}: {_reason(response)}",
                response.status_code,
            )
        return response.json() if response.content else None

    def _where(self) -> str:
        return where(self.base)

    # Reading: all a plan needs, one request per vhost whatever its size.

    def definitions(self, vhost: str) -> dict[str, Any] | None:
        """The vhost's exchanges, queues, bindings and policies; None when the vhost does not exist."""
        result: dict[str, Any] | None = self._request("GET", f"definitions/{_q(vhost)}", missing_ok=True)
        return result

    def queue(self, vhost: str, name: str) -> dict[str, Any] | None:
        """One queue with its counts and consumers (a migration reads its own queues so)."""
        result: dict[str, Any] | None = self._request("GET", f"queues/{_q(vhost)}/{_q(name)}", missing_ok=True)
        return result

    def queue_bindings(self, vhost: str, name: str) -> list[dict[str, Any]]:
        result = self._request("GET", f"queues/{_q(vhost)}/{_q(name)}/bindings", missing_ok=True)
        return list(result or [])

    def connection(self, name: str) -> dict[str, Any] | None:
        """One client connection, with the client properties it announced (its connection_name)."""
        result: dict[str, Any] | None = self._request("GET", f"connections/{_q(name)}", missing_ok=True)
        return result

    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "overview")
        return result

    # Writing: what AMQP cannot do.

    def create_vhost(self, vhost: str, user: str) -> None:
        """Create a vhost and give ``user`` (the AMQP user) full permissions in it."""
        self._request("PUT", f"vhosts/{_q(vhost)}", json={})
        self._request(
            "PUT", f"permissions/{_q(vhost)}/{_q(user)}", json={"configure": ".*", "write": ".*", "read": ".*"}
        )

    def put_policy(self, vhost: str, name: str, body: dict[str, Any]) -> None:
        self._request("PUT", f"policies/{_q(vhost)}/{_q(name)}", json=body)

    def delete_policy(self, vhost: str, name: str) -> None:
        self._request("DELETE", f"policies/{_q(vhost)}/{_q(name)}", missing_ok=True)


def _q(name: str) -> str:
    return quote(name, safe="")


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("reason") or body.get("error") or body)[:300] if isinstance(body, dict) else str(body)[:300]


def tls_reason(error: BaseException) -> str:
    """The OpenSSL reason inside a requests/urllib3 error chain, e.g. 'certificate verify failed: ...'."""
    found = re.search(r"\[SSL(?:: [A-Z_]+)?\] ([^('\"]+)", str(error))
    return found.group(1).strip() if found else "see --ca-file"
