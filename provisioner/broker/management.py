"""The management HTTP API: reading a vhost in a constant number of requests, and the writes
AMQP cannot do (vhosts, permissions, policies)."""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from provisioner.broker.endpoints import Endpoints, where
from provisioner.broker.retry import DEFAULT_BACKOFF, Backoff, call_with_retry
from provisioner.errors import BrokerError


class ManagementError(BrokerError):
    """A management API request failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0, transient: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        if transient is not None:  # read by retry.is_transient before the error's causes
            self.transient = transient


# The management API's refusal reasons that name a missing user tag (RabbitMQ answers 401 with them).
REQUIRED_TAGS = {
    "Not administrator user": "'administrator'",
    "Not monitor user": "'monitoring' or 'administrator'",
    "Not policymaker user": "'policymaker' or 'administrator'",
}


class Management:
    """A small client of the management API that counts its requests (the benchmark prints them)."""

    def __init__(self, endpoints: Endpoints, timeout: float = 30.0, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.endpoints = endpoints
        self.backoff = backoff
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = self._auth()  # type: ignore[assignment]
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify = endpoints.verify
        self.requests_made = 0
        self.writes_made = 0

    @property
    def base(self) -> str:
        """The management API of the node the run talks to now (another one after a failover)."""
        return self.endpoints.management_base

    def _auth(self, node: int | None = None) -> tuple[bytes, bytes]:
        # UTF-8, as the broker stores passwords: requests would encode str as latin-1 and fail on an emoji.
        user, password = self.endpoints.management_auth_of(node)
        return user.encode("utf-8"), password.encode("utf-8")

    def _request(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """One request, retried on transient faults; None for a 404 when ``missing_ok``."""

        def call() -> requests.Response:
            """The request to the current node or, when it does not answer, the next node that does."""
            order = self.endpoints.node_order()
            first: ManagementError | None = None
            for position, node in enumerate(order):
                try:
                    response = self._send(method, path, node, **kwargs)
                except ManagementError as error:
                    if position == len(order) - 1 or not _node_down(error):
                        raise
                    first = first or error
                    continue
                self.endpoints.settle(node, first.__cause__ if first is not None else None)
                return response
            raise AssertionError("unreachable: the last node's error is raised")

        response = call_with_retry(call, self.backoff, describe=f"{method} /api/{path}")
        refused = not response.ok  # a body is decoded only then: a definitions export may be megabytes
        if missing_ok and (response.status_code == 404 or (refused and "vhost_not_found" in response.text[:200])):
            return None  # 3.10 answers 400 vhost_not_found for the definitions of a missing vhost
        if response.status_code in (401, 403):
            if missing_ok and _reason(response) == "Not administrator user" and path.startswith("definitions/"):
                return FORBIDDEN  # the caller reads the vhost kind by kind instead
            raise ManagementError(self._refusal(method, path, response), response.status_code)
        if response.status_code >= 400:
            raise ManagementError(
                f"management API {method} /api/{path} answered {response.status_code}: {_reason(response)}",
                response.status_code,
            )
        return response.json() if response.content else None

    def _send(self, method: str, path: str, node: int, **kwargs: Any) -> requests.Response:
        """One request to one node; ManagementError (status 0: no answer) for what is not an answer."""
        self.requests_made += 1
        if method != "GET":
            self.writes_made += 1
        base = self.endpoints.management_base_of(node)
        try:
            response = self.session.request(
                method,
                f"{base}/api/{path}",
                timeout=self.timeout,
                verify=self.verify,
                auth=self._auth(node),  # type: ignore[arg-type]
                **kwargs,
            )
        except requests.exceptions.SSLError as error:
            raise ManagementError(
                f"TLS handshake with the management API at {where(base)} failed: {tls_reason(error)}",
                transient=False,
            ) from error
        except requests.exceptions.RequestException as error:
            unresolved = name_not_resolved(error)
            if unresolved is not None:
                raise ManagementError(
                    f"the management API's host name {urlsplit(base).hostname!r} does not resolve "
                    f"({unresolved.strerror})",
                    transient=unresolved.errno == socket.EAI_AGAIN,
                ) from error
            raise ManagementError(
                f"cannot reach the management API at {where(base)} ({type(error).__name__}); "
                f"is the rabbitmq_management plugin enabled? (rabbitmq-plugins enable rabbitmq_management)"
            ) from error
        if response.status_code >= 500:
            raise ManagementError(
                f"management API at {where(base)} answered {response.status_code} to {method} /api/{path}",
                response.status_code,
            ) from requests.HTTPError(response=response)
        return response

    def _where(self) -> str:
        return where(self.base)

    def _refusal(self, method: str, path: str, response: requests.Response) -> str:
        """Why the API refused: wrong credentials, or which tag or permission the user lacks."""
        user, reason = self.endpoints.management_auth[0], _reason(response)
        said = f"({response.status_code} {reason})"
        if reason == "Login failed":
            return f"the management API at {self._where()} refused the credentials of user {user!r} {said}"
        if reason == "Not management user":
            return (
                f"user {user!r} has no tag the management API accepts {said}; "
                f"give it the 'management' tag at least (see the README for what each command needs)"
            )
        needed = REQUIRED_TAGS.get(reason)
        tags = self._tags()
        if tags is None:  # whoami refused too: the credentials themselves (4.x says only "Not_Authorized")
            return f"the management API at {self._where()} refused the credentials of user {user!r} {said}"
        has = f"user {user!r} (tags: {', '.join(tags) if tags else 'none'})"
        if needed:
            return f"{has} may not {method} /api/{path} at {self._where()}: it needs the {needed} tag {said}"
        return (
            f"{has} may not {method} /api/{path} at {self._where()} {said}: it needs permissions on the vhost, "
            f"and the 'policymaker' or 'administrator' tag for policies"
        )

    def _tags(self) -> list[str] | None:
        """The user's tags from GET /api/whoami; None when whoami refuses the credentials too."""
        try:
            response = self.session.get(f"{self.base}/api/whoami", timeout=self.timeout, verify=self.verify)
            self.requests_made += 1
            if response.status_code == 401:
                return None
            return tag_list(response.json()) if response.ok else []
        except (requests.RequestException, ValueError):
            return []

    # Reading: all a plan needs, one request per vhost whatever its size.

    def definitions(self, vhost: str) -> dict[str, Any] | None:
        """The vhost's exchanges, queues, bindings and policies; None when the vhost does not exist.

        One request for an administrator; a user with only the 'management' tag
        may not read definitions, so its vhost is read kind by kind (five requests).
        """
        result = self._request("GET", f"definitions/{_q(vhost)}", missing_ok=True)
        if result is FORBIDDEN:
            return self._definitions_by_kind(vhost)
        return result  # type: ignore[no-any-return]

    def _definitions_by_kind(self, vhost: str) -> dict[str, Any] | None:
        """What GET /api/definitions/{vhost} holds, from the per-kind lists a 'management' user may read."""
        exchanges = self._request("GET", f"exchanges/{_q(vhost)}", missing_ok=True)
        if exchanges is None:  # every vhost has its default exchanges: this one does not exist
            return None
        kinds = {kind: self._request("GET", f"{kind}/{_q(vhost)}") or [] for kind in DEFINITION_KINDS[1:]}
        kinds["exchanges"] = exchanges
        kinds["queues"] = [q for q in kinds["queues"] if not q.get("exclusive")]  # definitions never hold them
        return kinds

    def operator_policies(self, vhost: str) -> list[dict[str, Any]]:
        """The vhost's operator policies (definitions leave them out); [] for a user who may not read them."""
        try:
            result = self._request("GET", f"operator-policies/{_q(vhost)}", missing_ok=True)
        except ManagementError as error:
            if error.status in (401, 403):
                return []  # a user without the administrator or policymaker tag plans without them
            raise
        return list(result or [])

    def listing(self, what: str) -> list[dict[str, Any]]:
        """A broker-wide list: vhosts (those this user can see), users, permissions, topic-permissions."""
        return list(self._request("GET", what) or [])

    def queue(self, vhost: str, name: str) -> dict[str, Any] | None:
        """One queue with its counts and consumers (a migration reads its own queues so)."""
        if name in DOT_SEGMENTS:  # the API resolves /queues/v/.. to /queues/v, even as %2E%2E: filter a list
            page = self._request("GET", f"queues/{_q(vhost)}", missing_ok=True, params=_exactly(name))
            return next((q for q in (page or {}).get("items", []) if q.get("name") == name), None)
        result: dict[str, Any] | None = self._request("GET", f"queues/{_q(vhost)}/{_q(name)}", missing_ok=True)
        return result

    def queue_bindings(self, vhost: str, name: str) -> list[dict[str, Any]]:
        """The bindings whose destination is this queue, the default exchange's included."""
        if name in DOT_SEGMENTS:
            every = self._request("GET", f"bindings/{_q(vhost)}", missing_ok=True) or []
            return [b for b in every if b.get("destination_type") == "queue" and b.get("destination") == name]
        result = self._request("GET", f"queues/{_q(vhost)}/{_q(name)}/bindings", missing_ok=True)
        return list(result or [])

    def connection(self, name: str) -> dict[str, Any] | None:
        """One client connection, with the client properties it announced (its connection_name)."""
        result: dict[str, Any] | None = self._request("GET", f"connections/{_q(name)}", missing_ok=True)
        return result

    def whoami(self) -> dict[str, Any]:
        """The user the API knows these credentials as, with its tags."""
        result: dict[str, Any] = self._request("GET", "whoami")
        return result

    def cluster_nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes, each with its name and whether it runs."""
        return list(self._request("GET", "nodes", params={"columns": "name,running"}) or [])

    def queue_placement(self, vhost: str) -> list[dict[str, Any]]:
        """Where each queue of a vhost lives: its node (classic, stream) or its members (quorum)."""
        columns = {"columns": "name,type,node,members"}
        return list(self._request("GET", f"queues/{_q(vhost)}", missing_ok=True, params=columns) or [])

    def add_quorum_member(self, vhost: str, queue: str, node: str) -> None:
        """Add a member of a quorum queue on a node (RabbitMQ 4.x; 3.x has only rabbitmq-queues add_member)."""
        self._request("POST", f"queues/quorum/{_q(vhost)}/{_q(queue)}/replicas/add", json={"node": node})

    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "overview")
        return result

    # Writing: what AMQP cannot do.

    def create_vhost(self, vhost: str, user: str, body: dict[str, Any] | None = None) -> None:
        """Create a vhost (``body``: its description, default queue type) and give ``user`` full permissions in it."""
        self._request("PUT", f"vhosts/{_q(vhost)}", json=body or {})
        self._request(
            "PUT", f"permissions/{_q(vhost)}/{_q(user)}", json={"configure": ".*", "write": ".*", "read": ".*"}
        )

    def put_policy(self, vhost: str, name: str, body: dict[str, Any]) -> None:
        self._request("PUT", f"policies/{_q(vhost)}/{_q(name)}", json=body)

    def delete_policy(self, vhost: str, name: str) -> None:
        self._request("DELETE", f"policies/{_q(vhost)}/{_q(name)}", missing_ok=True)

    def delete_operator_policy(self, vhost: str, name: str) -> None:
        self._request("DELETE", f"operator-policies/{_q(vhost)}/{_q(name)}", missing_ok=True)


def _node_down(error: ManagementError) -> bool:
    """The node did not answer at all (refused, reset, timed out): another node of the list may."""
    return error.status == 0 and isinstance(error.__cause__, (requests.ConnectionError, requests.Timeout))


def tag_list(whoami: Any) -> list[str]:
    """The tags of a GET /api/whoami answer: a list (3.x, 4.x) or a comma-separated string (older)."""
    tags = whoami.get("tags") if isinstance(whoami, dict) else None
    if isinstance(tags, str):
        return [tag for tag in tags.split(",") if tag]
    return [str(tag) for tag in tags or []]


DOT_SEGMENTS = (".", "..")
DEFINITION_KINDS = ("exchanges", "queues", "bindings", "policies")
FORBIDDEN: Any = object()  # _request's answer for definitions a user may not read


def _q(name: str) -> str:
    return quote(name, safe="")


def _exactly(name: str) -> dict[str, str | int]:
    """List-endpoint parameters that select the one object of this name."""
    return {"page": 1, "page_size": 100, "name": "^" + re.escape(name) + "$", "use_regex": "true"}


def name_not_resolved(error: BaseException) -> socket.gaierror | None:
    """The DNS failure inside an error's chain (causes, urllib3's reasons, pika's wrapped errors), if any."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return current
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None), *current.args])
        pending.extend(getattr(current, "exceptions", None) or ())
    return None


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
