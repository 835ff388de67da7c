"""The management HTTP API: reading a vhost in a constant number of requests, and the writes
AMQP cannot do (vhosts, permissions, policies)."""

from __future__ import annotations

import re
import socket
import threading
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from provisioner.broker import parameter_paths
from provisioner.broker.endpoints import Endpoints, where
from provisioner.broker.retry import DEFAULT_BACKOFF, NO_RETRY, Backoff, call_with_retry, is_transient
from provisioner.broker.words import broker_words
from provisioner.errors import BrokerError
from provisioner.protected import owner_text
from provisioner.topology.verdicts import parse_version


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
# GET /api/overview without the message statistics it would otherwise gather (Management.overview).
OVERVIEW_PARAMS = {"disable_stats": "true"}


class RetryState:
    """What the requests of one run share about retrying.

    A broker that did not answer within the retries: the next request tries
    once, not the whole backoff again (a plan's parallel reads would each wait it
    out and print its lines). One thread at a time prints its retries; the others,
    retrying the same fault meanwhile, log at info.
    """

    def __init__(self) -> None:
        self.unreachable = False
        self._announcer: int | None = None
        self._lock = threading.Lock()

    def announces(self) -> bool:
        """Whether this thread's retries print their lines: the first thread to retry, until its call ends."""
        with self._lock:
            if self._announcer is None:
                self._announcer = threading.get_ident()
            return self._announcer == threading.get_ident()

    def stop_announcing(self) -> None:
        with self._lock:
            if self._announcer == threading.get_ident():
                self._announcer = None


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
        self.retries = RetryState()  # shared with the clients of parallel reads (reads.py)

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

        retries = self.retries
        try:
            response = call_with_retry(
                call,
                NO_RETRY if retries.unreachable else self.backoff,
                describe=f"{method} /api/{path}",
                announce=retries.announces,
            )
        except ManagementError as error:
            retries.unreachable = retries.unreachable or (error.status == 0 and is_transient(error))
            raise
        finally:
            retries.stop_announcing()
        retries.unreachable = False
        refused = not response.ok  # a body is decoded only then: a definitions export may be megabytes
        if response.status_code == 404 and '"error":"not_found"' in response.text[:100].replace(" ", ""):
            # RabbitMQ 4.3 hides a vhost the user has no permissions in behind a 404 of its own (a missing
            # object answers "Object Not Found"): a refusal, never "the vhost does not exist".
            raise ManagementError(self._refusal(method, path, response), 403)
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

    def definitions(self, vhost: str, complete: bool = False) -> dict[str, Any] | None:
        """The vhost's exchanges, queues, bindings and policies; None when the vhost does not exist.

        One request for an administrator; a user with only the 'management' tag
        may not read definitions, so its vhost is read kind by kind (five requests).
        So is a vhost whose name is not ASCII: RabbitMQ 4.0 answers 500 to its definitions.
        """
        if not vhost.isascii():
            return self._definitions_by_kind(vhost)
        result = self._request("GET", f"definitions/{_q(vhost)}", missing_ok=True)
        if result is FORBIDDEN:
            return self._definitions_by_kind(vhost)
        # RabbitMQ 4.3 leaves internal exchanges out: read them where a binding names one, or ``complete``
        # (an export) on a version that may leave them out.
        if result is not None and (_binds_unlisted_exchanges(result) or (complete and _may_omit_internal(result))):
            result["exchanges"] = self._with_internal_exchanges(vhost, list(result.get("exchanges") or []))
        return result  # type: ignore[no-any-return]

    def _with_internal_exchanges(self, vhost: str, exchanges: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The definitions' exchanges and the vhost's internal ones, which RabbitMQ 4.3's definitions leave out."""
        listed = {item["name"] for item in exchanges}
        rows = self._request("GET", f"exchanges/{_q(vhost)}", missing_ok=True) or []
        fields = ("name", "type", "durable", "auto_delete", "internal", "arguments")
        missing = [row for row in rows if row.get("internal") and row["name"] not in listed]
        return exchanges + [{name: row.get(name) for name in fields} for row in missing]

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

    def queue_totals(self, vhost: str, sizes: bool = False) -> list[dict[str, Any]]:
        """Every queue of a vhost with its ready and unacknowledged counts, in one request.

        ``disable_stats`` with ``enable_queue_totals`` asks the queues themselves
        (classic queues answer live, quorum queues as of their last tick) and works
        where the statistics are off (4.x denying deprecated features). ``sizes``
        asks the statistics instead, the only source of message bytes (as of their
        last sample; absent where statistics are off).
        """
        columns = "name,type,messages_ready,messages_unacknowledged"
        params = {"columns": columns + ",message_bytes"} if sizes else {"columns": columns}
        if not sizes:
            params |= {"disable_stats": "true", "enable_queue_totals": "true"}
        return list(self._request("GET", f"queues/{_q(vhost)}", missing_ok=True, params=params) or [])

    def protected_queues(self, vhost: str) -> dict[str, str]:
        """The vhost's protected queues (RabbitMQ 4.1+: a plugin's, deleted only with their owner) -> their owner.

        One request: only the list of queues shows ``internal_owner`` (definitions and totals leave it out).
        """
        params = {"columns": "name,internal_owner", "disable_stats": "true"}
        rows = self._request("GET", f"queues/{_q(vhost)}", missing_ok=True, params=params) or []
        return {str(row["name"]): owner_text(row["internal_owner"]) for row in rows if row.get("internal_owner")}

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

    def exchange(self, vhost: str, name: str) -> dict[str, Any] | None:
        """One exchange of a vhost as GET /api/exchanges/{vhost}/{name} gives it; None when it does not exist."""
        found = self._request("GET", f"exchanges/{_q(vhost)}/{_q(name)}", missing_ok=True)
        return None if found is None or found is FORBIDDEN else dict(found)

    def overview(self) -> dict[str, Any]:
        """The broker's version, cluster name and exchange types, without its message statistics.

        ``disable_stats`` spares the broker the totals and rates it would gather first: 2 to 4 ms
        against 13 to 19 ms (3.10 and 4.3, measured for issue 29), and every caller reads only
        the fields that stay (rabbitmq_version, cluster_name, exchange_types).
        """
        result: dict[str, Any] = self._request("GET", "overview", params=OVERVIEW_PARAMS)
        return result

    def extensions(self) -> list[dict[str, Any]]:
        """The management plugin's extensions: which plugins' pages are on (federation, shovel)."""
        return list(self._request("GET", "extensions") or [])

    def deprecated_features(self) -> list[dict[str, Any]] | None:
        """The broker's deprecated features and their state; None where it cannot say (3.x)."""
        rows: list[dict[str, Any]] | None = self._request("GET", "deprecated-features", missing_ok=True)
        return rows

    # By path, for the broker/ modules that map a whole kind onto the API (accounts.py, parameters' broker.py).

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """The document at ``path`` (with query ``params``); None when it does not exist."""
        return self._request("GET", path, missing_ok=True, **({"params": params} if params else {}))

    def put(self, path: str, body: dict[str, Any]) -> None:
        self._request("PUT", path, json=body)

    def delete(self, path: str, body: dict[str, Any] | None = None) -> None:
        """Delete what ``path`` names; nothing to do when it is gone already."""
        self._request("DELETE", path, missing_ok=True, **({"json": body} if body is not None else {}))

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

    # Objects of the parameter kinds (provisioner/parameters/): operator policies, federation upstreams, shovels,
    # global parameters, by the kind's name (where each lives: broker/parameter_paths.py).

    def parameter_objects(self, kind: str, vhost: str) -> list[dict[str, Any]]:
        """Every object of parameter kind ``kind`` in ``vhost`` (of the cluster, for a cluster-wide kind)."""
        return list(self.get(parameter_paths.collection(kind, vhost)) or [])

    def put_parameter_object(self, kind: str, vhost: str, name: str, body: dict[str, Any]) -> None:
        self.put(parameter_paths.item(kind, vhost, name), body)

    def delete_parameter_object(self, kind: str, vhost: str, name: str) -> None:
        """Delete one object of parameter kind ``kind``; nothing to do when it is gone already."""
        self.delete(parameter_paths.item(kind, vhost, name))

    # Runtime parameters of a component (a dynamic shovel is one: component "shovel").

    def parameter(self, component: str, vhost: str, name: str) -> dict[str, Any] | None:
        """One runtime parameter, None when it does not exist."""
        result: dict[str, Any] | None = self._request(
            "GET", f"parameters/{_q(component)}/{_q(vhost)}/{_q(name)}", missing_ok=True
        )
        return result

    def put_parameter(self, component: str, vhost: str, name: str, value: dict[str, Any]) -> None:
        self._request("PUT", f"parameters/{_q(component)}/{_q(vhost)}/{_q(name)}", json={"value": value})

    def delete_parameter(self, component: str, vhost: str, name: str) -> None:
        self._request("DELETE", f"parameters/{_q(component)}/{_q(vhost)}/{_q(name)}", missing_ok=True)

    def permissions(self, vhost: str, user: str) -> dict[str, Any] | None:
        """A user's configure, write and read patterns in a vhost; None when it has none there."""
        result: dict[str, Any] | None = self._request("GET", f"permissions/{_q(vhost)}/{_q(user)}", missing_ok=True)
        return result

    def policies(self, vhost: str) -> list[dict[str, Any]]:
        """The vhost's (user) policies."""
        return list(self._request("GET", f"policies/{_q(vhost)}", missing_ok=True) or [])


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


def _may_omit_internal(definitions: dict[str, Any]) -> bool:
    """Whether the definitions come from a version that may leave internal exchanges out (after 4.0)."""
    version = parse_version(str(definitions.get("rabbit_version") or ""))
    return version is not None and version >= (4, 1)


def _binds_unlisted_exchanges(definitions: dict[str, Any]) -> bool:
    """Whether a binding names an exchange the definitions do not list (not the default or an amq.* one).

    RabbitMQ 4.3.6's definitions leave out internal exchanges (4.0.5's list them),
    and an internal exchange receives only through exchange-to-exchange bindings:
    so a vhost with one costs one more request, and every other vhost none.
    """
    listed = {item.get("name") for item in definitions.get("exchanges") or []}
    for binding in definitions.get("bindings") or []:
        named = [binding.get("source")]
        if binding.get("destination_type") == "exchange":
            named.append(binding.get("destination"))
        if any(name and name not in listed and not str(name).startswith("amq.") for name in named):
            return True
    return False


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
    """The refusal's reason in words: HTML entities, Erlang terms and character lists decoded, one line."""
    try:
        body = response.json()
    except ValueError:
        return broker_words(response.text[:300])
    reason = (body.get("reason") or body.get("error") or body) if isinstance(body, dict) else body
    return broker_words(reason)[:300]


def tls_reason(error: BaseException) -> str:
    """The OpenSSL reason inside a requests/urllib3 error chain, e.g. 'certificate verify failed: ...'."""
    found = re.search(r"\[SSL(?:: [A-Z_]+)?\] ([^('\"]+)", str(error))
    return found.group(1).strip() if found else "see --ca-file"
