"""Where one process spends its time, phase by phase; ``PROVISION_PROFILE=1`` makes the CLI print it.

The library only records (a handful of clock reads per run, always on); cli/ prints.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_seconds: dict[str, float] = {}


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the time spent in the block to the phase ``name``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _seconds[name] = _seconds.get(name, 0.0) + time.perf_counter() - started


def timings() -> dict[str, float]:
    """Seconds per phase, in the order the phases first ran."""
    return dict(_seconds)
