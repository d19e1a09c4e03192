"""Readiness of the state tool: its probe says whether the store answers now."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from microcore.testing import start_app
from tests.support import PrivateRedis


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (stopped and restarted by the test)."""
    if shutil.which("redis-server") is None:  # pragma: no cover - the machine has one
        pytest.skip("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_state_probe_follows_the_redis_server(
    make_project: Callable[..., Path], private_redis: PrivateRedis
) -> None:
    """The probe is None while Redis answers, names Redis while it is down, and None again
    once it is back, without a restart of the app."""
    root = make_project({}, tools=["config", "logger", "state"])
    running = await start_app(root, settings={"STATE_URL": private_redis.url})
    try:
        state: Any = running.kernel.tool("state")
        assert await state.probe() is None
        private_redis.stop()
        problem = await state.probe()
        assert problem is not None and "Redis" in problem
        private_redis.start()
        assert await state.probe() is None
    finally:
        await running.stop()


async def test_state_probe_of_memory_is_always_ready(make_project: Callable[..., Path]) -> None:
    """The in-memory store is always ready; a tool that is not open says so."""
    root = make_project({}, tools=["config", "logger", "state"])
    running = await start_app(root)
    state: Any = running.kernel.tool("state")
    try:
        assert await state.probe() is None
    finally:
        await running.stop()
    assert await state.probe() == "the state store is not open"
