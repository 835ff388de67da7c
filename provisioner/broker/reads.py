"""Read a vhost kind by kind, in parallel, into the shape of its definitions document (issue 29).

GET /api/definitions/{vhost} makes the broker export every object with every
field, and its cost grows faster than the vhost (5.4 to 8.8 s for 40,001
objects on 3.10). The per-kind lists asked for only the columns a plan compares
(queues with ``disable_stats``) are lighter, answer a user with only the
'management' tag, and run side by side on their own connections. The document
built here holds exactly what the definitions hold (no default exchange, no
``amq.*`` exchange, no exclusive queue or binding to one, no binding of the
default exchange), so live_state reads either unchanged. The definitions read
is kept where it is cheaper (RabbitMQ 4.3 exports 10,001 objects in 0.07 s), where a list
is refused (an administrator without permissions in the vhost), and when
``PROVISION_LIVE_READ=definitions`` asks for it (``=kinds`` asks for the lists);
``Read.how`` says which was used.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from provisioner.broker.management import OVERVIEW_PARAMS, Management, ManagementError
from provisioner.topology.verdicts import parse_version

BY_KIND = "kinds"
DEFINITIONS = "definitions"
QUEUE_COLUMNS = "name,durable,auto_delete,arguments,exclusive"
EXCHANGE_COLUMNS = "name,type,durable,auto_delete,internal,arguments"
BINDING_COLUMNS = "source,destination,destination_type,routing_key,arguments"
READ_REQUESTS = 5  # per vhost read kind by kind: exchanges, queues, bindings, policies, operator policies
WORKERS = 8  # parallel connections of one read (the broker answers each list on its own process)


@dataclass(frozen=True)
class Read:
    """What a plan reads of one vhost: its definitions-shaped document (None: no such vhost), its
    operator policies, and how it was read (``kinds`` or ``definitions``)."""

    definitions: dict[str, Any] | None
    operator_policies: list[dict[str, Any]]
    how: str


def read_requests(vhosts: int, version: str = "") -> int:
    """The management requests a read of ``vhosts`` vhosts makes, whatever their size (definitions: one
    more where 4.3's leave out an internal exchange a binding names)."""
    if exports_cheaply(version) and preferred() != BY_KIND:
        return 1 + 2 * vhosts  # the version, then each vhost's definitions and operator policies
    return READ_REQUESTS * vhosts + 1  # the lists, and the broker's version once


def preferred() -> str:
    """How vhosts are read: PROVISION_LIVE_READ=definitions or =kinds, or '' (by the broker's version)."""
    chosen = os.environ.get("PROVISION_LIVE_READ", "").strip()
    return chosen if chosen in (DEFINITIONS, BY_KIND) else ""


def exports_cheaply(version: str) -> bool:
    """Whether the broker's definitions export is cheaper than the lists: RabbitMQ 4.3 (measured:
    0.07 s for 10,001 objects against 0.40 s for the lists; 3.10 takes 0.4 to 0.8 s and grows faster)."""
    parsed = parse_version(version)
    return parsed is not None and parsed >= (4, 3)


def read_vhosts(management: Management, vhosts: list[str]) -> dict[str, Read]:
    """Every vhost's document and operator policies, the cheaper way for this broker.

    The broker's version and every vhost's operator policies go first, side by
    side (small requests, read the same way either way); then, on a broker that
    exports cheaply, each vhost's definitions, elsewhere the lists of every vhost,
    side by side too, the version going into each document as ``rabbit_version``,
    as definitions carry it. Two waves: on 4.3 a thread that waits for one answer
    after another waits each time for the checks of the topology to let it run.
    """
    how = preferred()
    if how == DEFINITIONS or not vhosts:
        return {vhost: _by_definitions(management, vhost) for vhost in vhosts}
    first: dict[tuple[str, str], Callable[[Management], Any]] = {("", "version"): broker_version}
    first |= {(vhost, "operator_policies"): _operator_policies(vhost) for vhost in vhosts}
    answers = in_parallel(management, first)
    version = raised(answers[("", "version")])
    calls: dict[tuple[str, str], Callable[[Management], Any]] = {}
    cheaply = not how and exports_cheaply(version)
    for vhost in vhosts:
        if cheaply:
            calls[(vhost, DEFINITIONS)] = _definitions(vhost)
        else:
            calls |= {(vhost, kind): _lister(vhost, kind) for kind in LISTS}
    answers |= in_parallel(management, calls)
    found = {}
    for vhost in vhosts:
        policies = answers[(vhost, "operator_policies")]
        if cheaply:
            definitions = raised(answers[(vhost, DEFINITIONS)])
            found[vhost] = Read(definitions, list(raised(policies)) if definitions is not None else [], DEFINITIONS)
            continue
        lists = {kind: answers[(vhost, kind)] for kind in LISTS} | {"operator_policies": policies}
        if any(isinstance(answer, ManagementError) for answer in lists.values()):
            found[vhost] = _refused(management, vhost, lists)
            continue
        document = _document(lists, version)
        found[vhost] = Read(document, list(lists["operator_policies"]) if document else [], BY_KIND)
    return found


def raised(answer: Any) -> Any:
    """An answer of in_parallel; the ManagementError it hands back in place of one, raised."""
    if isinstance(answer, ManagementError):
        raise answer
    return answer


def _refused(management: Management, vhost: str, lists: dict[str, Any]) -> Read:
    """A list refused (400: not in this form; 401, 403: not to this user, who may still read the
    definitions, as an administrator without permissions in the vhost does): the definitions instead."""
    errors = [answer for answer in lists.values() if isinstance(answer, ManagementError)]
    if all(error.status in (400, 401, 403) for error in errors):
        return _by_definitions(management, vhost)
    raise errors[0]


def _by_definitions(management: Management, vhost: str) -> Read:
    definitions = management.definitions(vhost)
    policies = management.operator_policies(vhost) if definitions is not None else []
    return Read(definitions, policies, DEFINITIONS)


def _document(lists: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The per-kind answers as GET /api/definitions/{vhost} holds them; None when the vhost does not exist."""
    exchanges = lists["exchanges"]
    if exchanges is None:  # every vhost has its default exchanges: this one does not exist
        return None
    queues, exclusive = [], set()
    for row in lists["queues"] or []:
        if row.pop("exclusive", False):
            exclusive.add(row["name"])
        else:
            queues.append(row)
    bindings = [
        row
        for row in lists["bindings"] or []
        if row["source"] and not (row["destination_type"] == "queue" and row["destination"] in exclusive)
    ]
    return {
        "rabbit_version": version,
        "exchanges": [row for row in exchanges if row["name"] and not row["name"].startswith("amq.")],
        "queues": queues,
        "bindings": bindings,
        "policies": list(lists["policies"] or []),
    }


def _lister(vhost: str, kind: str) -> Callable[[Management], Any]:
    path, params = f"{kind}/{quote(vhost, safe='')}", LISTS[kind]
    return lambda clone: clone.get(path, params)


def _definitions(vhost: str) -> Callable[[Management], Any]:
    return lambda clone: clone.definitions(vhost)


def _operator_policies(vhost: str) -> Callable[[Management], Any]:
    return lambda clone: clone.operator_policies(vhost)


def broker_version(clone: Management) -> str:
    """The broker's version: '' when the overview is refused (a plan then goes on without it); a broker
    that does not answer ends the read here, before the lists would each wait for it again."""
    try:
        return str(
            (clone.get("overview", {**OVERVIEW_PARAMS, "columns": "rabbitmq_version"}) or {}).get("rabbitmq_version")
            or ""
        )
    except ManagementError as error:
        if error.status == 0:
            raise
        return ""


def in_parallel(management: Management, calls: dict[Any, Callable[[Management], Any]]) -> dict[Any, Any]:
    """Each call on its thread's own client (a requests session is not shared between threads, and
    each keeps its connection for the thread's next call); a ManagementError is returned as the
    answer, any other error raised. Their requests count in ``management``."""
    clients = threading.local()
    made: list[Management] = []

    def run(call: Callable[[Management], Any]) -> Any:
        clone = getattr(clients, "management", None)
        if clone is None:
            clone = clients.management = Management(management.endpoints, management.timeout, management.backoff)
            clone.retries = management.retries
            made.append(clone)
        try:
            return call(clone)
        except ManagementError as error:
            return error

    with ThreadPoolExecutor(min(WORKERS, len(calls)), thread_name_prefix="read") as pool:
        answers = dict(zip(calls, pool.map(run, calls.values()), strict=True))
    for clone in made:
        management.requests_made += clone.requests_made
        clone.session.close()
    return answers


LISTS: dict[str, dict[str, str]] = {
    "exchanges": {"columns": EXCHANGE_COLUMNS},
    "queues": {"disable_stats": "true", "columns": QUEUE_COLUMNS},
    "bindings": {"columns": BINDING_COLUMNS},
    "policies": {},
}
