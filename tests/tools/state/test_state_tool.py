"""The state tool booted in a project: STATE_URL, validation, ownership-free sharing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from microcore.testing import start_app
from tests.support import present

TOOLS = ["config", "logger", "db", "state"]

COUNTER = """
from microcore import Plugin

class CounterPlugin(Plugin):
    def __init__(self, state):
        self.state = state

    async def on_boot(self):
        await self.state.incr("boots", "counter")
"""


async def test_state_tool_serves_plugins_and_survives_plugin_reload(
    make_project: Callable[..., Path],
) -> None:
    """Plugins share the tool itself; what they stored outlives an unload and reload."""
    root = make_project({"domains/a/plugins/counter_plugin.py": COUNTER}, tools=TOOLS)
    running = await start_app(root)
    try:
        kernel = running.kernel
        state: Any = kernel.tool("state")
        assert kernel.plugins["a.CounterPlugin"].instance.state is state  # type: ignore[union-attr]
        assert await state.get("boots", "counter") == 1
        await kernel.unload("a.CounterPlugin")
        batch = await kernel.stage([root / "domains/a/plugins/counter_plugin.py"])
        kernel.commit(batch)
        kernel.retire(batch)
        assert await state.get("boots", "counter") == 2
    finally:
        await running.stop()


async def test_state_tool_round_trip(make_project: Callable[..., Path]) -> None:
    """get/set/delete/incr/keys work through the running tool."""
    running = await start_app(make_project({}, tools=TOOLS))
    try:
        state: Any = running.kernel.tool("state")
        await state.set("carts", "u1", {"items": [1]})
        assert await state.get("carts", "u1") == {"items": [1]}
        assert await state.incr("hits", "x", by=3) == 3
        assert await state.keys("carts") == ["u1"]
        assert await state.delete("carts", "u1") is True
        assert await state.get("carts", "u1", default="none") == "none"
    finally:
        await running.stop()


async def test_state_tool_ttl_with_swapped_store(make_project: Callable[..., Path]) -> None:
    """A store with a controllable clock drives expiry through the tool (no sleeping)."""
    running = await start_app(make_project({}, tools=TOOLS))
    try:
        state: Any = running.kernel.tool("state")
        memory = sys.modules["tools.state.memory"].MemoryBackend
        now = [0.0]
        state._store = memory(clock=lambda: now[0])  # the clock is the store's, not a setting
        await state.set("s", "k", "v", ttl=10)
        now[0] = 10.0
        assert await state.get("s", "k") is None
    finally:
        await running.stop()


async def test_state_tool_refuses_bad_names(make_project: Callable[..., Path]) -> None:
    """An empty namespace or a non-string key is refused clearly."""
    running = await start_app(make_project({}, tools=TOOLS))
    try:
        state: Any = running.kernel.tool("state")
        error = sys.modules["tools.state"].StateError
        with pytest.raises(error, match="namespace must be a non-empty string"):
            await state.get("", "k")
        with pytest.raises(error, match="key must be a string"):
            await state.set("ns", 1, "v")
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0", "cannot reach Redis at redis://127.0.0.1:1/0"),
        ("redis://app:s3cret@127.0.0.1:1/0", "cannot reach Redis at redis://app:***@127.0.0.1"),
        ("redis://127.0.0.1:notaport/0", "is not a valid Redis URL"),
        ("mongo://x", "scheme 'mongo' is not supported; supported: memory:// (built in), redis://"),
        ("memory", "is not a URL"),
        ("memory://somewhere", "memory:// takes no host or path"),
    ],
)
async def test_state_url_errors_fail_the_tool(
    make_project: Callable[..., Path], url: str, message: str
) -> None:
    """A STATE_URL the tool cannot serve fails the state tool with a clear message."""
    running = await start_app(make_project({}, tools=TOOLS), settings={"STATE_URL": url})
    try:
        tool = running.kernel.status().tools["state"]
        assert tool.status == "failed"
        assert message in present(tool.error).message
        assert "s3cret" not in present(tool.error).message
    finally:
        await running.stop()


@pytest.mark.parametrize("prefix", [" ", "my app"])
async def test_state_prefix_errors_fail_the_tool(
    make_project: Callable[..., Path], prefix: str
) -> None:
    """STATE_PREFIX must be a name: blank or spaced values fail the tool clearly."""
    settings = {"STATE_PREFIX": prefix}
    running = await start_app(make_project({}, tools=TOOLS), settings=settings)
    try:
        tool = running.kernel.status().tools["state"]
        assert tool.status == "failed"
        assert "STATE_PREFIX must be a non-empty name without spaces" in present(tool.error).message
    finally:
        await running.stop()


async def test_redis_url_without_the_redis_package_says_how_to_install_it(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without redis installed, a redis:// URL fails the tool with the install line."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    settings = {"STATE_URL": "redis://127.0.0.1:6379/0"}
    running = await start_app(make_project({}, tools=TOOLS), settings=settings)
    try:
        tool = running.kernel.status().tools["state"]
        assert "pip install 'microcore[redis]'" in present(tool.error).message
    finally:
        await running.stop()
