"""Pure parts of the worker runtime: which queue a delivery came from, and which foreign bodies a task can take."""

from __future__ import annotations

import json

import pytest
from billiard.einfo import ExceptionWithTraceback
from celery import Celery
from celery.exceptions import Reject, TimeLimitExceeded
from kombu import Exchange, Queue
from kombu.transport.native_delayed_delivery import calculate_routing_key

from provisioner.celery.dead_letters import Failure, unwrap
from provisioner.celery.foreign import MAX_DEPTH, UndecodableBody, decode
from provisioner.celery.queues import came_delayed, work_queue


def app_with_queues() -> Celery:
    app = Celery("pure", set_as_current=False)
    app.conf.task_queues = (
        Queue("celery", Exchange("direct", type="direct"), routing_key="celery"),
        Queue("orders", Exchange("topic", type="topic"), routing_key="orders.created"),
        Queue("audit", Exchange("other", type="topic"), routing_key="audit"),
        Queue("audit.copy", Exchange("third", type="fanout"), routing_key="audit"),
    )
    return app


@pytest.mark.parametrize(
    ("exchange", "routing_key", "queue"),
    [
        ("direct", "celery", "celery"),
        ("", "orders", "orders"),  # the default exchange: the key is the queue's name
        ("topic", "orders.created", "orders"),
        ("celery_delayed_delivery", calculate_routing_key(3, "orders.created"), "orders"),
        ("celery_delayed_delivery", calculate_routing_key(2**27, "orders.created"), "orders"),
        ("celery_delayed_delivery", calculate_routing_key(5, "audit"), None),  # two queues take that key
        ("celery_delayed_delivery", calculate_routing_key(5, "celery"), None),  # never delayed: direct
        ("topic", "orders.deleted", None),
    ],
)
def test_the_queue_of_a_delivery(exchange: str, routing_key: str, queue: str | None) -> None:
    found = work_queue(app_with_queues(), {"exchange": exchange, "routing_key": routing_key})
    assert (found.name if found is not None else None) == queue


def test_a_delayed_key_is_recognised_by_its_28_bits_only() -> None:
    assert came_delayed({"routing_key": calculate_routing_key(1, "x")})
    assert not came_delayed({"routing_key": "1.0.1.x"}) and not came_delayed({})


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"id": 1}', {"id": 1}),
        (b"7", 7),
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
        ('"text"', "text"),
    ],
)
def test_a_json_document_is_handed_over(body: bytes | str, value: object) -> None:
    assert decode(body) == value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b" \n", "empty body"),
        (b"\xff{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"\xef\xbb\xbf{}", "not JSON"),  # a byte-order mark is not JSON
        (b"1" * 5000, "not JSON"),  # past Python's digit limit
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}"),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, f"deeper than {MAX_DEPTH}"),
        (b"[" * 100_000, f"deeper than {MAX_DEPTH}"),  # RecursionError in the decoder itself
    ],
)
def test_any_other_body_is_refused_with_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(UndecodableBody, match=reason):
        decode(body)


def test_a_dead_letter_names_the_real_exception() -> None:
    wrapped = ExceptionWithTraceback(TimeLimitExceeded(2.0), "Traceback ...")
    assert Failure(unwrap(wrapped)).describe() == "TimeLimitExceeded: 2.0"
    assert Failure(Reject("bad input", requeue=False)).describe() == "Reject: bad input"
    assert Failure(RuntimeError()).describe() == "RuntimeError"
