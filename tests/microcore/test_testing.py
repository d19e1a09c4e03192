"""microcore.testing: the app, client and events fixtures, used as a project's tests use them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from microcore.testing import (
    START_TIMEOUT,
    TEST_SETTINGS,
    EventRecorder,
    Kernel,
    RunningApp,
    record_events,
    start_app,
)
from microcore.tooling import ConfigurationError, DependencyError
from tests.conftest import ProjectFactory

SHOP_PLUGIN = """
from microcore import Plugin


class ShopPlugin(Plugin):
    def __init__(self, http, event_bus, state, config):
        self.http, self.bus, self.state, self.config = http, event_bus, state, config

    async def on_boot(self):
        await self.bus.publish("shop.booted", {})
        self.http.add_endpoint("/orders", "POST", self.create)
        self.http.add_endpoint("/greeting", "GET", self.greeting)

    async def create(self, data, context):
        count = await self.state.incr("orders", "count")
        await self.bus.publish("order.created", {"n": count})
        return {"success": True, "count": count}

    async def greeting(self, data, context):
        return {"greeting": self.config.get("GREETING", "hi")}
"""

FAKE_BUS = """
from microcore import Tool


class FakeBusTool(Tool):
    name = "event_bus"

    def tap(self, callback):
        self.callback = callback
        return lambda: None

    def history(self, *, correlation_id=None, limit=None):
        return []

    def flows(self):
        raise NotImplementedError
"""

BUS_WITHOUT_TAP = """
from microcore import Tool


class FakeBusTool(Tool):
    name = "event_bus"
"""


@pytest.fixture
def microcore_root(make_project: ProjectFactory) -> Path:
    """The project the app fixture boots in this module."""
    return make_project({"domains/shop/plugins/shop_plugin.py": SHOP_PLUGIN})


@pytest.fixture
def microcore_settings() -> dict[str, str]:
    """Extra settings for this module's app."""
    return {"GREETING": "hello"}


async def test_app_fixture_boots_the_project(app: RunningApp) -> None:
    """The app fixture boots the project at microcore_root with its plugins ok."""
    assert app.kernel.status().plugins["shop.ShopPlugin"].status == "ok"
    assert app.kernel.settings["DATABASE_URL"] == "sqlite://:memory:"


async def test_client_fixture_uses_settings(client: httpx.AsyncClient) -> None:
    """The client talks to the app; microcore_settings reach the config tool."""
    response = await client.get("/greeting")
    assert response.json() == {"greeting": "hello"}


async def test_isolation_first_test_starts_fresh(client: httpx.AsyncClient) -> None:
    """Each test gets a fresh app: the first order is number 1."""
    assert (await client.post("/orders", json={})).json()["count"] == 1


async def test_isolation_second_test_starts_fresh(client: httpx.AsyncClient) -> None:
    """Nothing from other tests leaks: the first order is number 1 again."""
    assert (await client.post("/orders", json={})).json()["count"] == 1


async def test_events_wait_for_returns_published_event(
    client: httpx.AsyncClient, events: EventRecorder
) -> None:
    """wait_for returns an event already published; published lists boot events too."""
    await client.post("/orders", json={})
    event = await events.wait_for("order.created", timeout=1.0)
    assert event.payload == {"n": 1}
    assert event.source == "shop.ShopPlugin"
    assert events.names() == ["shop.booted", "order.created"]
    assert events.published[-1] is event


async def test_events_wait_for_each_event_once(
    client: httpx.AsyncClient, events: EventRecorder
) -> None:
    """Successive waits return successive events; none left times out naming what was seen."""
    await client.post("/orders", json={})
    await client.post("/orders", json={})
    first = await events.wait_for("order.*")
    second = await events.wait_for("order.created")
    assert (first.payload["n"], second.payload["n"]) == (1, 2)
    with pytest.raises(TimeoutError, match=r"no event 'order.created' .* published: shop.booted"):
        await events.wait_for("order.created", timeout=0.05)


async def test_events_wait_for_future_events(
    client: httpx.AsyncClient, events: EventRecorder
) -> None:
    """Concurrent waiters each get their own event once it is published."""
    got: list[int] = []

    async def waiter() -> None:
        got.append((await events.wait_for("order.created", timeout=5.0)).payload["n"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        await client.post("/orders", json={})
        await client.post("/orders", json={})
    assert sorted(got) == [1, 2]


async def test_start_app_raises_boot_errors(make_project: ProjectFactory, tmp_path: Path) -> None:
    """A project that cannot boot raises its error from start_app; stop is idempotent."""
    duplicate = "from microcore import Tool\n\nclass T(Tool):\n    name = 'config'\n"
    root = make_project({"tools/other/other_tool.py": duplicate}, tools=["config"])
    with pytest.raises(ConfigurationError, match="two tools are named 'config'"):
        await start_app(root)
    (tmp_path / "empty").mkdir()
    running = await start_app(tmp_path / "empty")
    await running.stop()
    await running.stop()


async def test_start_that_times_out_stops_the_boot(make_project: ProjectFactory) -> None:
    """A boot slower than start()'s timeout is cancelled and shut down before TimeoutError
    reaches the caller: no kernel keeps running in the background."""
    root = make_project(
        {
            "domains/shop/plugins/slow_plugin.py": """
            import anyio
            from microcore import Plugin


            class SlowPlugin(Plugin):
                async def on_boot(self):
                    await anyio.Event().wait()
            """,
        },
        tools=["config", "logger"],
    )
    running = RunningApp(Kernel(root, environ={}, overrides=TEST_SETTINGS))
    with pytest.raises(TimeoutError):
        await running.start(timeout=0.05)
    apps = [t for t in asyncio.all_tasks() if t.get_name() == "microcore-test-app"]
    assert apps == []
    assert running.kernel.plugins == {} and not running.kernel.booted
    assert running.kernel.hook_timeout < START_TIMEOUT  # one hanging hook fails only itself


async def test_record_events_from_any_event_source(make_project: ProjectFactory) -> None:
    """Any bus that implements the EventSource contract is recorded through its tap."""
    running = await start_app(make_project({"tools/bus/bus_tool.py": FAKE_BUS}, tools=[]))
    try:
        recorder, remove = record_events(running.kernel)
        bus = running.kernel.tool("event_bus")  # FAKE_BUS: what tap() was given
        bus.callback("not really an event")  # type: ignore[attr-defined]
        seen: list[Any] = recorder.published
        assert seen == ["not really an event"]
        remove()
    finally:
        await running.stop()


async def test_record_events_needs_a_tap(make_project: ProjectFactory) -> None:
    """A bus that is no EventSource is refused with a message that says what is missing."""
    running = await start_app(make_project({"tools/bus/bus_tool.py": BUS_WITHOUT_TAP}, tools=[]))
    try:
        with pytest.raises(DependencyError, match=r"is no EventSource \(tap, history"):
            record_events(running.kernel)
    finally:
        await running.stop()
