"""A seeded stream of bodies a foreign queue can receive, and the oracle of what becomes of each."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pika
from rabbit import version

SEED = 20261207
CONTENT_TYPES = ("application/json", "text/plain", "application/x-python-serialize", "application/xml", None)
REFUSED_DEPTH = 300  # the stream's deep bodies nest 40, 150 (handed over) or 300 and more levels (refused)


def fuzzed_bodies(seed: int) -> list[tuple[bytes, pika.BasicProperties]]:
    """Bodies a foreign queue can receive: deep, huge, not UTF-8, not JSON, empty, odd headers, and valid ones."""
    rng = random.Random(seed)
    bodies = [b"", b"  \n", b"{not json", b"NaN", b"\xef\xbb\xbf{}", b"1" * 5000, b'"\\ud800"']
    bodies += [b"\xff\xfe", b'"\xc3\x28"']
    bodies += [b"[" * depth + b"]" * depth for depth in (40, 150, REFUSED_DEPTH, 1000, 50_000)]
    bodies += [b'{"a":' * depth + b"1" + b"}" * depth for depth in (40, 1000)]
    bodies += [json.dumps("x" * 2_000_000).encode(), json.dumps(list(range(200_000))).encode()]
    if version() >= (4, 0):  # 6 MB, whose task message (18 MB, escaped) is over 4.x's 16 MiB message limit
        bodies += [json.dumps("\u00e9" * 3_000_000, ensure_ascii=False).encode()]
    bodies += [json.dumps(_value(rng, 4)).encode() for _ in range(8)]
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) for _ in range(6)]
    bodies += [json.dumps(_value(rng, 3)).encode()[: rng.randrange(1, 20)] for _ in range(4)]  # cut short
    fuzzed = []
    for body in bodies:
        headers = {"compression": "application/x-gzip"} if rng.random() < 0.1 else None
        properties = pika.BasicProperties(content_type=rng.choice(CONTENT_TYPES), headers=headers, delivery_mode=2)
        fuzzed.append((body, properties))
    return fuzzed


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(6 if depth else 4)
    if kind == 0:
        return rng.randrange(-(10**12), 10**12)
    if kind == 1:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.choice([None, True, False, 1.5e300])
    if kind == 3:
        return rng.random()
    if kind == 4:
        return [_value(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {f"k{n}": _value(rng, depth - 1) for n in range(rng.randrange(4))}


def handed_over(body: bytes, properties: pika.BasicProperties) -> str | None:
    """The oracle: the digest the task records of the value it gets, or None for a body that is dead-lettered."""
    if properties.headers or not body.strip():
        return None
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if body.count(b"[") + body.count(b"{") >= REFUSED_DEPTH or too_large(body):
        return None
    return hashlib.sha256(repr(value).encode("utf-8", "surrogatepass")).hexdigest()


def too_large(body: bytes) -> bool:
    """Whether the broker refuses the task message of this body: RabbitMQ 4.x takes at most 16 MiB by default."""
    return version() >= (4, 0) and len(body) > 1_000_000 and len(json.dumps(json.loads(body))) > 16 * 2**20
