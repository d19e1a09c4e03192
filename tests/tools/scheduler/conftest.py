"""Helpers: a scheduler on a fake kernel inside the test's task group, driven by a fake clock.

Time never passes by itself in these tests: :class:`FakeClock` moves only when a test
calls :meth:`FakeClock.advance`, and tests wait for conditions (a job asleep until a
due time, a run counted) with deadlines instead of sleeping.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from microcore.tooling import Owner
from tests.support import FakeKernel
from tools.config.config_tool import ConfigTool
from tools.scheduler import Scheduler
from tools.scheduler.scheduler_tool import SchedulerTool
from tools.state import State
from tools.state.redis import RedisBackend  # noqa: F401 - pinned with the other tool modules
from tools.state.state_tool import StateTool

# This repository's tool modules, as the tests imported them.
_TOOLS = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] == "tools"}

START = 1_700_000_000.0  # a multiple of every interval the tests use


class FakeClock:
    """A clock that moves only when told; ``waiting`` lists the due times jobs sleep for."""

    def __init__(self, now: float = START) -> None:
        self._now = now
        self._moved = anyio.Event()
        self.waiting: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        self.waiting.append(when)
        try:
            while self._now < when:
                await self._moved.wait()
        finally:
            self.waiting.remove(when)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper."""
        self._now += seconds
        moved, self._moved = self._moved, anyio.Event()
        moved.set()

    def sleeping_until(self, when: float) -> bool:
        return when in self.waiting


@asynccontextmanager
async def running_state(settings: dict[str, str]) -> AsyncIterator[StateTool]:
    """A set-up state tool (e.g. on Redis); shut down on exit."""
    sys.modules.update(_TOOLS)  # a booted project re-pointed ``tools``; Redis loads lazily
    async with anyio.create_task_group() as tg:
        kernel = FakeKernel(settings, tg)
        state = StateTool(ConfigTool(kernel))
        await state.setup()
        try:
            yield state
        finally:
            with anyio.CancelScope(shield=True):
                await state.shutdown()


@asynccontextmanager
async def running_scheduler(
    settings: dict[str, str] | None = None,
    *,
    state: State | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[SchedulerTool]:
    """A set-up scheduler (fake clock unless one is given); drained on exit."""
    async with anyio.create_task_group() as tg:
        kernel = FakeKernel(dict(settings or {}), tg)
        tool = SchedulerTool(ConfigTool(kernel), kernel, state)
        tool.clock = clock or FakeClock()
        await tool.setup()
        try:
            yield tool
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):  # a fake clock
                await tool.drain()  # never reaches the drain deadline by itself
            tg.cancel_scope.cancel()


def plugin(
    tool: SchedulerTool, identity: str = "shop.JobsPlugin", *, active: bool = True
) -> tuple[Scheduler, Owner]:
    """A scheduler bound to a new owner (serving unless told otherwise), and the owner."""
    owner = Owner(identity)
    if active:
        owner.activate()
    return tool.bind(owner), owner


def activate(tool: SchedulerTool, owner: Owner) -> None:
    """Commit a pending owner, as the kernel does (then tells the tools)."""
    owner.activate()
    tool.on_plugins_changed()


def retire(tool: SchedulerTool, owner: Owner) -> None:
    """Mark an owner released, as a commit that replaces or unloads it does."""
    owner.mark_released()
    tool.on_plugins_changed()


class Recorder:
    """An async job that records each call; ``gate`` (when set) holds each run until opened."""

    def __init__(self, *, fail: BaseException | None = None, hold: bool = False) -> None:
        self.calls = 0
        self.finished = 0
        self.fail = fail
        self.gate: anyio.Event | None = anyio.Event() if hold else None
        self.__name__ = "recorder"

    async def __call__(self) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        self.finished += 1
        if self.fail is not None:
            raise self.fail

    def release_gate(self) -> None:
        """Let the run in progress (and later ones) finish."""
        if self.gate is not None:
            self.gate.set()
