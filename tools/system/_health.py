"""Readiness: whether the services the app needs answer now (``Tool.probe``), cached briefly.

``/system/health`` may be polled by a load balancer every second from many places; the
probes (a ``SELECT 1``, a Redis ``PING``) run at most once per ``cache`` seconds, all
tools concurrently, each bounded by ``timeout``; callers in between share the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import anyio
import structlog

from microcore import Tool

__all__ = ("Readiness",)

_log = structlog.get_logger("microcore.system", tool="system")


class Readiness:
    """The problems of the running tools' services: ``{tool name: why it is not ready}``."""

    def __init__(
        self,
        tools: Callable[[], Iterable[tuple[str, Tool]]],
        *,
        cache: float = 2.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tools = tools
        self._cache = cache
        self._timeout = timeout
        self._clock = clock
        self._lock = anyio.Lock()
        self._checked_at: float | None = None
        self._problems: dict[str, str] = {}

    async def problems(self) -> dict[str, str]:
        """The last answer while it is fresh, else a new round of probes."""
        if self._fresh():
            return self._problems
        async with self._lock:  # one round at a time: the others wait for its answer
            if self._fresh():
                return self._problems
            found: dict[str, str] = {}
            async with anyio.create_task_group() as tg:
                for name, tool in self._tools():
                    tg.start_soon(self._probe, name, tool, found)
            self._problems = dict(sorted(found.items()))
            self._checked_at = self._clock()
        return self._problems

    def _fresh(self) -> bool:
        return self._checked_at is not None and self._clock() - self._checked_at < self._cache

    async def _probe(self, name: str, tool: Tool, found: dict[str, str]) -> None:
        try:
            with anyio.fail_after(self._timeout):
                problem = await tool.probe()
        except TimeoutError:
            problem = f"no answer within {self._timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool's probe
            _log.exception("system_probe_failed", probed=name)
            problem = f"probe failed: {type(exc).__name__}: {exc}"
        if problem is not None:
            found[name] = problem
