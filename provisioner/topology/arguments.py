"""What the broker knows about x-arguments, in one table, and which values AMQP tables can carry.

Each known argument has its friendly queue field, its policy key, its type and
range, and the queue types that take it. Unknown arguments (a plugin's, say) may
hold what an AMQP field table carries and the broker hands back unchanged:
strings, booleans, signed 64-bit integers, and lists and tables of those. Floats
are refused: AMQP can carry them, but no RabbitMQ argument reads one, and a
float next to an integer argument is nearly always a typo.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_EXPIRY_MS = 2**32 - 1  # the broker's limit for TTLs and expiry
ALL_TYPES = frozenset({"classic", "quorum", "stream"})
CLASSIC, QUORUM, STREAM = frozenset({"classic"}), frozenset({"quorum"}), frozenset({"stream"})
NOT_STREAM = frozenset({"classic", "quorum"})
MAX_ROUTING_KEY_BYTES = 255  # AMQP's short string
# A stream's retention: a positive whole number and a unit (Years, Months, Days, hours, minutes, seconds).
MAX_AGE_PATTERN, MAX_AGE_FORM = "[1-9][0-9]*[YMDhms]", "a positive whole number and a unit Y, M, D, h, m or s (7D)"
_DECIMAL = re.compile(r"-?[0-9]+")  # ASCII digits only: "²".isdigit() is True, int("²") fails


@dataclass(frozen=True)
class Argument:
    """One x-argument the broker knows: how it is written in a topology and what it accepts."""

    name: str
    kind: str  # int | bool | str
    friendly: str = ""  # the queue field that stands for it
    policy_key: str = ""  # the policy definition key that can carry it instead
    minimum: int = 0
    maximum: int = INT64_MAX
    choices: tuple[str, ...] = ()
    queue_types: frozenset[str] = ALL_TYPES  # the queue types that take it (RabbitMQ 3.10 and 4.x alike)
    pattern: str = ""  # the form a string value must have, as a regular expression
    form: str = ""  # that form in words
    max_bytes: int = 0  # a string value's limit in UTF-8 bytes (a routing key: 255)


QUEUE_ARGUMENTS: dict[str, Argument] = {
    a.name: a
    for a in (
        Argument("x-max-length", "int", "max_length", "max-length", queue_types=NOT_STREAM),
        Argument("x-max-length-bytes", "int", "max_length_bytes", "max-length-bytes"),
        Argument("x-message-ttl", "int", "message_ttl", "message-ttl", 0, MAX_EXPIRY_MS, queue_types=NOT_STREAM),
        Argument("x-expires", "int", "expires", "expires", 1, MAX_EXPIRY_MS, queue_types=NOT_STREAM),
        Argument(
            "x-overflow",
            "str",
            "overflow",
            "overflow",
            choices=("drop-head", "reject-publish", "reject-publish-dlx"),
            queue_types=NOT_STREAM,
        ),
        Argument("x-max-priority", "int", "max_priority", "", 0, 255, queue_types=CLASSIC),
        Argument("x-delivery-limit", "int", "delivery_limit", "delivery-limit", queue_types=QUORUM),
        Argument("x-single-active-consumer", "bool", "single_active_consumer", queue_types=NOT_STREAM),
        Argument("x-queue-mode", "str", "queue_mode", "queue-mode", choices=("default", "lazy"), queue_types=CLASSIC),
        Argument(
            "x-dead-letter-strategy",
            "str",
            "dead_letter_strategy",
            "dead-letter-strategy",
            choices=("at-most-once", "at-least-once"),
            queue_types=QUORUM,
        ),
        Argument("x-quorum-initial-group-size", "int", "initial_cluster_size", "", 1, queue_types=QUORUM),
        Argument(
            "x-max-age", "str", "max_age", "max-age", queue_types=STREAM, pattern=MAX_AGE_PATTERN, form=MAX_AGE_FORM
        ),
        Argument("x-stream-max-segment-size-bytes", "int", "", "stream-max-segment-size-bytes", 1, queue_types=STREAM),
        Argument("x-initial-cluster-size", "int", "", "", 1, queue_types=STREAM),
        Argument("x-dead-letter-exchange", "str", "", "dead-letter-exchange", queue_types=NOT_STREAM),
        Argument(
            "x-dead-letter-routing-key",
            "str",
            "",
            "dead-letter-routing-key",
            queue_types=NOT_STREAM,
            max_bytes=MAX_ROUTING_KEY_BYTES,
        ),
        Argument(
            "x-queue-master-locator",
            "str",
            "",
            "queue-master-locator",
            choices=("client-local", "min-masters", "random"),
            queue_types=CLASSIC,
        ),
        # Classic queues take it from 4.0 on, as the replacement of the denied master locator (readiness.py);
        # 3.10 refuses it on them, which validate cannot know: apply says so in one line.
        Argument(
            "x-queue-leader-locator",
            "str",
            "",
            "queue-leader-locator",
            choices=("client-local", "balanced", "random", "least-leaders"),
        ),
        Argument("x-queue-version", "int", "", "queue-version", 1, 2, queue_types=CLASSIC),
        Argument("x-max-in-memory-length", "int", "", "max-in-memory-length", queue_types=QUORUM),
        Argument("x-max-in-memory-bytes", "int", "", "max-in-memory-bytes", queue_types=QUORUM),
    )
}
BY_POLICY_KEY: dict[str, Argument] = {a.policy_key: a for a in QUEUE_ARGUMENTS.values() if a.policy_key}


def parse_integer(value: Any) -> int | None:
    """An integer argument as the broker or a file may write it (7, "7"); None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return int(value.strip())
    return None


def value_problem(value: Any, argument: Argument | None) -> str | None:
    """Why the broker cannot take ``value`` for ``argument`` (None: unknown argument), or None if it can."""
    if argument is None:
        return table_value_problem(value)
    if argument.kind == "int":
        number = parse_integer(value)
        if number is None:
            return f"must be an integer, not {describe(value)}"
        if not argument.minimum <= number <= argument.maximum:
            return f"must be between {argument.minimum} and {argument.maximum}, not {number}"
    elif argument.kind == "bool":
        if not isinstance(value, bool) and not (isinstance(value, str) and value.lower() in ("true", "false")):
            return f"must be true or false, not {describe(value)}"
    elif not isinstance(value, str):
        return f"must be a string, not {describe(value)}"
    elif argument.choices and value not in argument.choices:
        return f"must be one of {' | '.join(argument.choices)}, not {value!r}"
    elif argument.pattern and not re.fullmatch(argument.pattern, value):
        return f"must be {argument.form}, not {value!r}"
    elif argument.max_bytes and (size := len(value.encode("utf-8", "surrogatepass"))) > argument.max_bytes:
        return f"is {size} bytes (UTF-8); the broker takes at most {argument.max_bytes}"
    return None


def table_value_problem(value: Any, depth: int = 0) -> str | None:
    """Why an AMQP field table cannot carry ``value`` as the broker hands it back, or None."""
    if depth > 20:
        return "nests too deeply for an AMQP table"
    if isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"{value} is outside the signed 64-bit range AMQP carries"
    if isinstance(value, list):
        return next(filter(None, (table_value_problem(item, depth + 1) for item in value)), None)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return "table keys must be strings"
        return next(filter(None, (table_value_problem(item, depth + 1) for item in value.values())), None)
    return f"an AMQP argument holds strings, integers, booleans, lists and tables, not {describe(value)}"


def describe(value: Any) -> str:
    """A value's kind in a user's words, for error lines."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else "infinity"
        return f"a number with a fraction or exponent ({value})"
    if isinstance(value, int):
        return f"{value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a table"
    return f"a {type(value).__name__} ({value})"
