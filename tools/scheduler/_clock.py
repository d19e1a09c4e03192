"""Where the scheduler reads the time and waits: one small object, replaced in tests."""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ("Clock", "SystemClock")


class Clock(Protocol):
    """Wall-clock time (shared by replicas, so they agree on each due time) and waiting."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once :meth:`now` has reached ``when`` (at once when it has already)."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and ``anyio.sleep``."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await anyio.sleep(delay)
