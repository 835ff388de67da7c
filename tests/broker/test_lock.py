"""The apply lock on the real broker: a second holder waits, times out naming the first, and a
crashed or disconnected holder never leaves the lock behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from urllib.parse import quote

import pytest
import rabbit
from rabbit import MANAGEMENT_URL, amqp_url, api, fresh_vhost, parameters, wait_for

from provisioner.broker.endpoints import Endpoints
from provisioner.broker.lock import HOLDER_ARGUMENT, LOCK_QUEUE, VhostLock, management_holder_lookup
from provisioner.broker.management import Management
from provisioner.broker.retry import NO_RETRY
from provisioner.errors import LockTimeout

NO_RETRY_MANAGEMENT = Management(Endpoints(management_url=MANAGEMENT_URL), timeout=5.0, backoff=NO_RETRY)


def locker(vhost: str, timeout: float, holder: str) -> VhostLock:
    return VhostLock(parameters(vhost), timeout, holder=holder, lookup=management_holder_lookup(NO_RETRY_MANAGEMENT))


class FakeClock:
    """The lock's clock and sleep: time passes only when the lock pauses, so waits are counted, never timed."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_second_apply_waits_then_times_out_naming_the_holder(vhost: str) -> None:
    with locker(vhost, 5, "provision apply by ana@ci-1 pid 11 since T0") as first:
        assert first.held
        time = FakeClock()
        second = VhostLock(
            parameters(vhost),
            1.5,
            holder="provision apply by bob@ci-2 pid 22 since T1",
            lookup=management_holder_lookup(NO_RETRY_MANAGEMENT),
            sleep=time.sleep,
            clock=time.clock,
        )
        with pytest.raises(LockTimeout) as caught:
            second.acquire()
        # it asked the broker again after every pause, and paused for exactly its timeout in all
        assert len(time.pauses) > 1 and sum(time.pauses) == pytest.approx(1.5)
        assert "provision apply by ana@ci-1 pid 11 since T0" in str(caught.value)
        assert repr(vhost) in str(caught.value)
        assert not second.held
        queue = api("GET", f"queues/{quote(vhost, safe='')}/{LOCK_QUEUE}").json()
        assert queue["exclusive"] is True
        assert queue["arguments"][HOLDER_ARGUMENT] == "provision apply by ana@ci-1 pid 11 since T0"
    # the broker deletes an exclusive queue as it closes its connection, a moment after the close returns
    assert wait_for(lambda: api("GET", f"queues/{quote(vhost, safe='')}/{LOCK_QUEUE}").status_code == 404)


def test_waiter_gets_the_lock_only_after_the_holder_releases(vhost: str) -> None:
    first = locker(vhost, 1, "first")
    first.acquire()
    events: list[str] = []

    def pause(seconds: float) -> None:
        """The waiter was refused: the holder releases now (once), and the waiter tries again."""
        events.append("refused")
        if first.held:
            first.release()
            events.append("released")
        threading.Event().wait(seconds)  # the lock's own pause between tries

    second = VhostLock(parameters(vhost), 600, holder="second", sleep=pause)
    second.acquire()
    events.append("acquired")
    assert second.held
    assert events[:2] == ["refused", "released"] and events[-1] == "acquired"
    second.release()


def test_zero_timeout_fails_at_once(vhost: str) -> None:
    with locker(vhost, 1, "first"):
        time = FakeClock()
        with pytest.raises(LockTimeout, match="first"):
            VhostLock(
                parameters(vhost),
                0,
                holder="second",
                lookup=management_holder_lookup(NO_RETRY_MANAGEMENT),
                sleep=time.sleep,
                clock=time.clock,
            ).acquire()
        assert time.pauses == []  # refused once, never paused


def test_lock_of_one_vhost_does_not_block_another(vhost: str) -> None:
    with fresh_vhost("lock-other") as other, locker(vhost, 1, "a"), locker(other, 0, "b") as second:
        assert second.held


HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import pika
    from provisioner.broker.lock import VhostLock
    params = pika.URLParameters(sys.argv[1])
    VhostLock(params, 5, holder="provision apply by crashing@host").acquire()
    print("held", flush=True)
    time.sleep(120)
    """
)


def test_killed_holder_process_leaves_no_stale_lock(vhost: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, amqp_url(vhost)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout, match="crashing@host"):
            locker(vhost, 0.3, "waiter").acquire()
        waiter = locker(vhost, 600, "waiter")
        holder.kill()  # SIGKILL: no cleanup code runs, only the kernel closes the socket
        waiter.acquire()
        assert waiter.held
        waiter.release()
    finally:
        holder.kill()
        holder.wait()


def test_lock_frees_when_the_broker_closes_the_holders_connection(vhost: str) -> None:
    name = "provision apply by doomed@host"
    holder = locker(vhost, 1, name)
    holder.acquire()

    def holder_connection() -> str | None:
        # Without management metrics (4.x, denied), connections carry no user_provided_name and the vhost's
        # connection list is empty; the whole list still names the vhost, where the holder is the only client.
        connections = api("GET", "connections").json()
        names = [c["name"] for c in connections if c["vhost"] == vhost and c.get("user_provided_name", name) == name]
        return names[0] if names else None

    if rabbit.DENY_DEPRECATED and rabbit.version() >= (4, 3):
        # 4.3 without management metrics lists no connections at all: its rabbitmqctl closes the vhost's
        # connections, of which the holder's is the only one.
        rabbit.rabbitmqctl("close_all_connections", "-p", vhost, "the broker closes the holder's connection")
    else:
        connection = wait_for(holder_connection)
        assert api("DELETE", f"connections/{quote(connection, safe='')}").status_code == 204
    waiter = locker(vhost, 30, "waiter")
    waiter.acquire()
    assert waiter.held
    waiter.release()
    holder.release()  # its connection is already gone: releasing must not raise
