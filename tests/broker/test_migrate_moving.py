"""Moving messages in a migration, on the real broker: the temporary queue no policy can touch, limits checked
while publishers publish, publishers on the default exchange, long names, transient queues, live consumers.

Every count is a passive declare (ready messages); nothing here waits on the management API's statistics
except where a test says so.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from rabbit import AMQP_PORT, DENY_DEPRECATED, HOST, api, consume_all, parameters, wait_for
from test_migrate import count, management, migrate

from provisioner.broker import mover
from provisioner.broker.pump import PREFETCH, SYNC_EVERY, MoveNacked
from provisioner.errors import BrokerError, UnsafeChange
from provisioner.migration import amqp
from provisioner.migration.parking import policy_name
from provisioner.migration.steps import MigrationStopped, Step, temporary_name
from provisioner.topology.model import Queue

QUEUE = "work"
SWAP_WINDOW = 5  # messages a publisher by name may have confirmed in the instant the old queue is deleted


class Crash(Exception):
    pass


def crash_before(name: str) -> Any:
    """A before_step hook that stops the migration (as a kill would) before the first step of that kind."""

    def hook(step: Step) -> None:
        if type(step).__name__ == name:
            raise Crash(step)

    return hook


@pytest.fixture
def channel(vhost: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    yield channel
    if connection.is_open:
        connection.close()


def fill(channel: Any, queue: str, messages: int, **properties: Any) -> None:
    for n in range(messages):
        channel.basic_publish("", queue, b"m-%d" % n, pika.BasicProperties(delivery_mode=2, **properties))


def bodies(channel: Any, queue: str) -> list[bytes]:
    return consume_all(channel, queue)


def q(name: str) -> str:
    return quote(name, safe="")


# ---- the temporary queue is immune ------------------------------------------------------------------


def test_no_user_policy_reaches_what_the_temporary_queue_parks_not_even_dot_star(vhost: str, channel: Any) -> None:
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 300)
    # `.*` would cut every queue to one message and expire it; the queue itself is kept by a policy of its own
    api(
        "PUT",
        f"policies/{q(vhost)}/own",
        json={"pattern": "^work$", "priority": 10, "definition": {"max-length": 10**6}},
    )
    api("PUT", f"policies/{q(vhost)}/all", json={"pattern": ".*", "priority": 5, "definition": {"max-length": 1}})
    api("PUT", f"policies/{q(vhost)}/hi", json={"pattern": "migrate", "priority": 99, "definition": {"expires": 1}})
    with pytest.raises(Crash):
        migrate(vhost, Queue(vhost, QUEUE, "quorum"), before_step=crash_before("Swap"))
    temporary = temporary_name(QUEUE)
    assert count(vhost, temporary) == 300  # all parked, none dropped by the `.*` policy's max-length 1
    shown = wait_for(lambda: api("GET", f"queues/{q(vhost)}/{q(temporary)}").json().get("policy"))
    assert shown == policy_name(temporary)
    migrate(vhost, Queue(vhost, QUEUE, "quorum"))
    assert count(vhost, QUEUE) == 300 and count(vhost, temporary) is None
    left = {p["name"] for p in api("GET", f"policies/{q(vhost)}").json()}
    assert left == {"all", "hi", "own"}  # ours is gone with the temporary queue


@pytest.mark.parametrize("key", ["message-ttl", "max-length", "expires"])
def test_an_operator_policy_that_limits_the_temporary_queue_refuses_before_anything_moves(
    vhost: str, channel: Any, key: str
) -> None:
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 50)
    # It matches the temporary queue only: one matching 'work' too is refused sooner, by the new queue's own check,
    # once the management API shows it (at once on 4.3, a statistics round late on 3.10).
    body = {"pattern": "migrate$", "priority": 1, "apply-to": "queues", "definition": {key: 1000}}
    api("PUT", f"operator-policies/{q(vhost)}/ops", json=body).raise_for_status()
    with pytest.raises(UnsafeChange) as refused:
        migrate(vhost, Queue(vhost, QUEUE, "quorum"))
    assert f"operator policy 'ops' (pattern 'migrate$') sets {key}=1000" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert count(vhost, QUEUE) == 50 and count(vhost, temporary_name(QUEUE)) is None


def test_messages_expiring_while_parked_are_dead_lettered_as_in_their_own_queue(vhost: str, channel: Any) -> None:
    channel.exchange_declare("dlx", "direct", durable=True)
    channel.queue_declare("dead", durable=True)
    channel.queue_bind("dead", "dlx", "gone")
    arguments = {"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "gone"}
    channel.queue_declare(QUEUE, durable=True, arguments=arguments)
    fill(channel, QUEUE, 40, expiration="1500")
    fill(channel, QUEUE, 10)  # these never expire
    with pytest.raises(Crash):
        migrate(vhost, Queue(vhost, QUEUE, "quorum", arguments=arguments), before_step=crash_before("Swap"))
    wait_for(lambda: count(vhost, "dead") == 40)  # expired in the temporary queue, caught where they belong
    migrate(vhost, Queue(vhost, QUEUE, "quorum", arguments=arguments))
    assert count(vhost, QUEUE) == 10 and count(vhost, "dead") == 40


# ---- names, durability, consumers ---------------------------------------------------------------------


def test_a_250_byte_queue_name_migrates(vhost: str, channel: Any) -> None:
    name = "é" * 125  # 250 bytes of UTF-8
    channel.queue_declare(name, durable=True)
    fill(channel, name, 100)
    with pytest.raises(Crash):
        migrate(vhost, Queue(vhost, name, "quorum"), before_step=crash_before("Swap"))
    temporary = temporary_name(name)
    assert len(temporary.encode("utf-8")) <= 255 and count(vhost, temporary) == 100
    migrate(vhost, Queue(vhost, name, "quorum"))
    assert count(vhost, name) == 100 and count(vhost, temporary) is None


def test_a_transient_queue_of_the_topology_can_be_migrated(vhost: str, channel: Any) -> None:
    target = Queue(vhost, QUEUE, "classic", durable=False, arguments={"x-max-length": 1000})
    if DENY_DEPRECATED:  # RabbitMQ 4 denying deprecated features refuses transient queues: one line, nothing moved
        channel.queue_declare(QUEUE, durable=True)
        fill(channel, QUEUE, 200)
        with pytest.raises(BrokerError) as refused:
            migrate(vhost, target)
        said = str(refused.value)
        assert "denies transient non-exclusive queues (deprecated feature transient_nonexcl_queues)" in said
        assert "nothing was moved" in said and "\n" not in said
        assert count(vhost, QUEUE) == 200 and count(vhost, temporary_name(QUEUE)) is None
        return
    channel.queue_declare(QUEUE, durable=False)
    fill(channel, QUEUE, 200)
    report = migrate(vhost, target)
    assert report.restored == 200 and count(vhost, QUEUE) == 200
    assert api("GET", f"queues/{q(vhost)}/{QUEUE}").json()["arguments"]["x-max-length"] == 1000


def test_force_with_a_live_consumer_migrates_at_once_and_says_it_was_cancelled(
    vhost: str, channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 200)
    worker = pika.BlockingConnection(parameters(vhost))
    consumer = worker.channel()
    cancelled = threading.Event()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(QUEUE, lambda *_: None)  # holds one message, never acks it
    consumer.add_on_cancel_callback(lambda _frame: cancelled.set())
    worker.process_data_events(time_limit=0.5)
    with caplog.at_level(logging.WARNING, logger="provisioner"):
        report = migrate(vhost, Queue(vhost, QUEUE, "quorum"), allow_consumers=True)
    worker.process_data_events(time_limit=0.5)
    assert cancelled.is_set() and report.cancelled == 1
    assert "its 1 consumer(s) were cancelled" in caplog.text and "must reconnect" in caplog.text
    assert count(vhost, QUEUE) == 199  # the one the consumer held unacknowledged went with the old queue (--force)
    worker.close()


def test_without_force_a_live_consumer_is_refused_at_once(vhost: str, channel: Any) -> None:
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 20)
    worker = pika.BlockingConnection(parameters(vhost))
    worker.channel().basic_consume(QUEUE, lambda *_: None)
    with pytest.raises(UnsafeChange, match="1 consumer"):
        migrate(vhost, Queue(vhost, QUEUE, "quorum"))
    worker.close()
    assert count(vhost, QUEUE) == 20 and count(vhost, temporary_name(QUEUE)) is None


def test_markers_go_only_where_they_cannot_push_a_message_out(vhost: str, channel: Any) -> None:
    """The pump's markers (pump.py: they bound a node kill's duplicates) on a classic source: never under a TTL,
    under a length limit only while 1,000 places are free, checked again before each marker."""
    channel.queue_declare("roomy", durable=True, arguments={"x-max-length": 1200})
    channel.queue_declare("tight", durable=True, arguments={"x-max-length": 1050})
    channel.queue_declare("timed", durable=True, arguments={"x-message-ttl": 600_000})
    for queue in ("roomy", "tight", "timed"):
        fill(channel, queue, 100)
    connection = pika.BlockingConnection(parameters(vhost))
    broker = amqp.PikaMigrationBroker(connection, vhost, management())
    every, room = broker._markers("roomy")
    assert every == SYNC_EVERY and room is not None and room()
    fill(channel, "roomy", 150)  # 250 held: fewer than 1,000 places free
    assert not room()
    assert broker._markers("tight") == (0, None)
    assert broker._markers("timed") == (0, None)
    connection.close()


# ---- limits, checked at the start and while publishers publish ------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"x-max-length": 100}, "x-max-length 100"),
        ({"x-message-ttl": 60000}, "x-message-ttl 60000"),
    ],
)
def test_a_limit_that_would_drop_or_expire_the_backlog_is_refused_untouched(
    vhost: str, channel: Any, arguments: dict[str, int], named: str
) -> None:
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 300)
    with pytest.raises(UnsafeChange) as refused:
        migrate(vhost, Queue(vhost, QUEUE, "classic", arguments=arguments))
    assert named in str(refused.value) and "300 messages" in str(refused.value) and "\n" not in str(refused.value)
    assert count(vhost, QUEUE) == 300 and count(vhost, temporary_name(QUEUE)) is None


def test_a_byte_limit_is_checked_too(vhost: str, channel: Any) -> None:
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 300)  # about 1.5 KB of bodies
    if DENY_DEPRECATED:  # management metrics denied: the broker reports no sizes, so the limit cannot be proven safe
        said = (
            r"300 messages of unknown size to hold \(the broker keeps no statistics\), under its x-max-length-bytes 500"
        )
    else:
        wait_for(lambda: api("GET", f"queues/{q(vhost)}/{QUEUE}").json().get("message_bytes"))  # its figure lags
        said = r"bytes of messages to hold, more than its x-max-length-bytes 500"
    with pytest.raises(UnsafeChange, match=said):
        migrate(vhost, Queue(vhost, QUEUE, "classic", arguments={"x-max-length-bytes": 500}))
    assert count(vhost, QUEUE) == 300


def test_messages_published_during_the_move_are_counted_against_the_new_limit(vhost: str, channel: Any) -> None:
    """The backlog fits at the start; what publishers add meanwhile makes it too much: stopped, nothing lost."""
    channel.exchange_declare("orders", "topic", durable=True)
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, "orders", "#")
    fill(channel, QUEUE, 80)
    target = Queue(vhost, QUEUE, "classic", arguments={"x-max-length": 100})
    with pytest.raises(Crash):  # the new queue is declared and bound; the backlog waits in the temporary queue
        migrate(vhost, target, before_step=_crash_at_second_move())
    for n in range(30):  # publishers go on: the new queue takes them
        channel.basic_publish("orders", "k", b"live-%d" % n, pika.BasicProperties(delivery_mode=2))
    with pytest.raises(UnsafeChange) as refused:
        migrate(vhost, target)
    assert "110 messages to hold, more than its x-max-length 100" in str(refused.value)
    assert count(vhost, QUEUE) + (count(vhost, temporary_name(QUEUE)) or 0) == 110  # nothing dropped


def _crash_at_second_move() -> Any:
    moves: list[Step] = []

    def hook(step: Step) -> None:
        if type(step).__name__ == "Move":
            moves.append(step)
            if len(moves) == 2:
                raise Crash(step)

    return hook


# ---- publishers on the default exchange cannot keep a migration busy ------------------------------------


class DirectPublisher:
    """Publishes straight to the queue's name (the default exchange), with confirms, as the rendered config
    publishes to binding-less queues; ``pause`` seconds between messages (0: a flood)."""

    def __init__(self, vhost: str, pause: float) -> None:
        self.vhost, self.pause = vhost, pause
        self.confirmed: list[bytes] = []
        self.unroutable: list[bytes] = []
        self.nacked: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        connection = pika.BlockingConnection(parameters(self.vhost))
        out = connection.channel()
        out.confirm_delivery()
        n = 0
        while not self.stop.is_set():
            body = b"direct-%d" % n
            try:
                out.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
                self.confirmed.append(body)
            except pika.exceptions.UnroutableError:
                self.unroutable.append(body)  # the publisher was told: not a silent loss
            except pika.exceptions.NackError:
                self.nacked.append(body)  # diverted to the temporary queue during the swap (kept, yet nacked)
            n += 1
            self.stop.wait(self.pause)
        connection.close()

    def __enter__(self) -> DirectPublisher:
        self.thread.start()
        wait_for(lambda: len(self.confirmed) > 100)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_steady_publishers_on_the_default_exchange_do_not_keep_the_migration_busy(vhost: str, channel: Any) -> None:
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 2000)
    with DirectPublisher(vhost, pause=0.002) as publisher:
        report = migrate(vhost, Queue(vhost, QUEUE, "classic", arguments={"x-max-length": 10**6}))
    kept = bodies(channel, QUEUE)
    missing = set(publisher.confirmed) - set(kept)
    print(
        f"{len(publisher.confirmed)} confirmed straight to the queue meanwhile, {len(publisher.nacked)} nacked "
        f"(diverted, kept), {len(publisher.unroutable)} returned, {len(missing)} confirmed as the old queue died"
    )
    assert report.restored >= 2000
    assert set(kept) >= {b"m-%d" % n for n in range(2000)} | set(publisher.nacked)
    # RabbitMQ confirms what it routed to a queue in the instant that queue is being deleted (rabbit_channel treats
    # a deleted queue as delivered): the README's stated window for publishers on the default exchange.
    assert len(missing) <= SWAP_WINDOW
    assert len(kept) - len(set(kept)) <= PREFETCH


def test_a_flood_on_the_default_exchange_into_a_quorum_queue_stops_in_one_line_and_keeps_everything(
    vhost: str, channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No policy can divert arrivals to a new quorum queue safely: when they never leave the old one empty, the
    migration stops in bounded time, saying where the messages are."""
    monkeypatch.setattr(amqp, "SWAP_TRIES", 3)  # the bound, not its size, is the point: 20 tries take a minute here
    monkeypatch.setattr(mover, "ROUNDS", 2)
    channel.queue_declare(QUEUE, durable=True)
    fill(channel, QUEUE, 500)
    with DirectPublisher(vhost, pause=0) as publisher, pytest.raises(MigrationStopped) as stopped:
        migrate(vhost, Queue(vhost, QUEUE, "quorum"))
    message = str(stopped.value)
    assert "publishers keep sending to queue 'work' by its name" in message and "\n" not in message
    assert f"its messages are in 'work' and in '{temporary_name(QUEUE)}'" in message
    assert "provision apply --migrate" in message
    kept = bodies(channel, QUEUE) + bodies(channel, temporary_name(QUEUE))
    assert set(kept) >= set(publisher.confirmed) | {b"m-%d" % n for n in range(500)}
    assert len(kept) - len(set(kept)) <= PREFETCH


def test_a_message_with_another_users_user_id_stops_the_move_there_in_one_line(vhost: str, channel: Any) -> None:
    name = f"test-moving-{uuid.uuid4().hex[:8]}"
    api("PUT", f"users/{name}", json={"password": "pw", "tags": ""}).raise_for_status()
    try:
        api("PUT", f"permissions/{q(vhost)}/{name}", json={"configure": ".*", "write": ".*", "read": ".*"})
        connection = pika.BlockingConnection(
            pika.ConnectionParameters(HOST, AMQP_PORT, vhost, pika.PlainCredentials(name, "pw"))
        )
        theirs = connection.channel()
        theirs.queue_declare(QUEUE, durable=True)
        for n in range(100):  # the broker lets a user stamp its own name, and only its own
            user_id = name if n == 60 else None
            theirs.basic_publish("", QUEUE, b"m-%d" % n, pika.BasicProperties(delivery_mode=2, user_id=user_id))
        connection.close()
        with pytest.raises(MigrationStopped) as stopped:
            migrate(vhost, Queue(vhost, QUEUE, "quorum"))
    finally:
        api("DELETE", f"users/{name}")
    message = str(stopped.value)
    assert f"a message carries user_id '{name}', not user 'guest'" in message and "impersonator" in message
    assert "60 message(s) moved before it" in message and "\n" not in message
    # stopped at that message: nothing after it moved, nothing twice
    assert (count(vhost, QUEUE), count(vhost, temporary_name(QUEUE))) == (40, 60)


# ---- a destination that refuses --------------------------------------------------------------------------


def test_a_destination_that_refuses_and_dead_letters_back_costs_one_duplicate_not_a_window(
    vhost: str, channel: Any
) -> None:
    """What a diversion left in force does to a move into its queue: every copy nacked and dead-lettered straight
    back to the source. The first message goes alone, so the nack comes with one copy in flight, not a window."""
    channel.queue_declare("source", durable=True)
    channel.queue_declare(
        "refusing",
        durable=True,
        arguments={
            "x-max-length": 0,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "source",
        },
    )
    fill(channel, "source", 300)
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        with pytest.raises(MoveNacked, match="moving 'source' to 'refusing'"):
            mover.drain(
                connection, lambda name: count(vhost, name) or 0, "source", "refusing", mover.MoveSettings(None, 30)
            )
    finally:
        if connection.is_open:
            connection.close()
    wait_for(lambda: count(vhost, "source") == 301)  # the 300, and the one copy that came back
    kept = bodies(channel, "source")
    assert len(kept) == 301 and len(set(kept)) == 300
