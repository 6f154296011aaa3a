"""The server's clock and id generator: the one place time is read and resource ids are made.

https://hl7.org/fhir/R4/resource.html#id

Everything that stamps a version (`meta.lastUpdated`), a Bundle or an audit record, and
everything that assigns a server id, asks here, so a test can fix both with `use(...)`:

    with clock.use(clock.FixedClock(start_us=1_700_000_000_000_000)):
        ...  # every version is stamped 1 µs after the previous one, ids are "id-1", "id-2", ...
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Clock", "FixedClock", "new_id", "now_micros", "use"]


class Clock:
    """Wall-clock time in microseconds since the epoch (UTC), random UUIDs as ids."""

    def now_micros(self) -> int:
        return time.time_ns() // 1000

    def new_id(self) -> str:
        return str(uuid.uuid4())


class FixedClock(Clock):
    """Deterministic: time starts at `start_us` and advances `step_us` per reading; ids count."""

    def __init__(self, start_us: int = 1_700_000_000_000_000, step_us: int = 1, prefix: str = "id-") -> None:
        self._now = start_us - step_us
        self._step = step_us
        self._ids = itertools.count(1)
        self._prefix = prefix
        self._lock = threading.Lock()

    def now_micros(self) -> int:
        with self._lock:
            self._now += self._step
            return self._now

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"


_current: Clock = Clock()


def now_micros() -> int:
    return _current.now_micros()


def new_id() -> str:
    return _current.new_id()


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    """Make `clock` the server's clock for the duration of the block."""
    global _current
    previous, _current = _current, clock
    try:
        yield clock
    finally:
        _current = previous
