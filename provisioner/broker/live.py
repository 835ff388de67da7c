"""Read a vhost's live state from the management API; live_state.py turns the answers into the model.

A constant number of management requests per vhost, whatever its size, side by
side (broker/reads.py): its exchanges, queues, bindings, policies and operator
policies, kind by kind, shaped as its definitions document (or that document
itself where the lists are refused), and the broker's version. Message counts,
where a plan shows them, come from broker/held.py (planning.with_exact_counts).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from provisioner.broker.management import Management
from provisioner.broker.reads import Read, read_vhosts

if TYPE_CHECKING:  # live_state is imported where the answers arrive: a plan's read starts before it is needed
    from provisioner.live_state import IncludeObject, LiveVhost
    from provisioner.topology.model import Topology


class LiveSoon(Protocol):
    """A read under way: called with the topology (and filter), it waits and returns the live state."""

    def __call__(
        self, desired: Topology | None = None, include: IncludeObject | None = None
    ) -> dict[str, LiveVhost]: ...


def _state(vhost: str, fetched: Read, desired: Topology | None, include: IncludeObject | None) -> LiveVhost:
    """One vhost's answers as live state, seen through ``include`` (None: live_state.include_object)."""
    from provisioner.live_state import LiveVhost, include_object, live_from_definitions

    if fetched.definitions is None:
        return LiveVhost(vhost, exists=False, read=fetched.how)
    state = live_from_definitions(
        vhost,
        fetched.definitions,
        desired=desired,
        operator_policies=fetched.operator_policies,
        include=include or include_object,
    )
    return replace(state, read=fetched.how)


def _with_version(found: dict[str, LiveVhost], management: Management) -> dict[str, LiveVhost]:
    """The broker's version comes with a vhost's definitions; only when every vhost
    is still to be created (never on a no-op plan) does it cost one more request."""
    if found and not any(state.version for state in found.values()):
        version = str(management.overview().get("rabbitmq_version") or "")
        found = {vhost: replace(state, version=version) for vhost, state in found.items()}
    return found


def read_vhost(
    management: Management, vhost: str, desired: Topology | None = None, include: IncludeObject | None = None
) -> LiveVhost:
    """The live state of one vhost: its definitions and its operator policies."""
    return _state(vhost, read_vhosts(management, [vhost])[vhost], desired, include)


def read_live(
    management: Management,
    vhosts: Iterable[str],
    desired: Topology | None = None,
    include: IncludeObject | None = None,
) -> dict[str, LiveVhost]:
    """The live state of every vhost a topology manages, as ``include`` lets it be seen."""
    fetched = read_vhosts(management, list(vhosts))
    return _with_version({vhost: _state(vhost, read, desired, include) for vhost, read in fetched.items()}, management)


def read_live_soon(management: Management, vhosts: Iterable[str]) -> LiveSoon:
    """Start reading the vhosts in a background thread; the returned call waits for them.

    The broker takes a while to export a big vhost: meanwhile the caller checks
    the topology, then hands it to the returned call, which turns the answers
    into live state as ``read_live`` does (raising what the requests raised).
    Until the call is made, ``management`` belongs to the thread.
    """
    names = list(vhosts)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["fetched"] = read_vhosts(management, names)
        except BaseException as error:  # handed to the waiting caller
            outcome["error"] = error

    thread = threading.Thread(target=work, name="read-live", daemon=True)
    thread.start()

    def wait(desired: Topology | None = None, include: IncludeObject | None = None) -> dict[str, LiveVhost]:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        found = {vhost: _state(vhost, fetched, desired, include) for vhost, fetched in outcome["fetched"].items()}
        return _with_version(found, management)

    return wait
