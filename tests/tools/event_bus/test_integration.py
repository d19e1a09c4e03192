"""The event bus inside a booted app: plugins publish, subscribe and request by identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import anyio
import httpx

from microcore._dev.reload import Reloader
from microcore.testing import RunningApp, start_app
from microcore.tooling import Owner
from tests.conftest import ProjectFactory
from tests.tools.event_bus.conftest import Until
from tools.event_bus import EventBus
from tools.event_bus.event_bus_tool import EventBusTool

TOOLS = ["config", "logger", "event_bus"]

ORDERS = """
from microcore import Plugin

class OrdersPlugin(Plugin):
    def __init__(self, event_bus):
        self.bus = event_bus

    async def on_boot(self):
        await self.bus.subscribe("price.quote", self.quote)

    async def quote(self, event):
        return {{"sku": event.payload["sku"], "price": {price}}}
"""

AUDIT = """
from microcore import Plugin

class AuditPlugin(Plugin):
    def __init__(self, event_bus):
        self.bus = event_bus
        self.seen = []

    async def on_boot(self):
        await self.bus.subscribe("order.>", self.on_order)

    async def on_order(self, event):
        self.seen.append(event)
        if event.name == "order.created":
            await self.bus.publish("order.audited", {"of": event.id})
"""

BROKEN = """
from microcore import Plugin

class BrokenPlugin(Plugin):
    def __init__(self, event_bus):
        self.bus = event_bus

    async def on_boot(self):
        await self.bus.subscribe("order.>", self.on_order)
        raise RuntimeError("boot failed after subscribing")

    async def on_order(self, event):
        raise AssertionError("a failed plugin must receive nothing")
"""


def _files(price: float = 2.5) -> dict[str, str]:
    return {
        "domains/shop/plugins/orders_plugin.py": ORDERS.format(price=price),
        "domains/shop/plugins/audit_plugin.py": AUDIT,
        "domains/shop/plugins/broken_plugin.py": BROKEN,
    }


def _bus(running: RunningApp) -> EventBusTool:
    """The app's bus (a project's copy of the tool class, so not an isinstance check)."""
    return cast(EventBusTool, running.kernel.tool("event_bus"))


def _client(running: RunningApp) -> EventBus:  # a test-only handle, as a tool would make
    owner = Owner("tests.Client")
    owner.activate()
    return _bus(running).bind(owner)


def _audit(running: RunningApp) -> Any:
    """The booted AuditPlugin instance (its ``seen`` list is the test's window)."""
    return running.kernel.plugins["shop.AuditPlugin"].instance


async def test_bus_delivers_between_plugins_of_a_booted_app(
    make_project: ProjectFactory, until: Until
) -> None:
    """Subscriptions made in on_boot serve once booted; chains keep correlation and parent."""
    running = await start_app(make_project(_files(), tools=TOOLS))
    try:
        kernel = running.kernel
        assert kernel.status().tools["event_bus"].status == "ok"
        assert kernel.status().plugins["shop.AuditPlugin"].registrations.get(
            "subscription", []
        ) == ["order.>"]
        audit = _audit(running)
        client = _client(running)
        event_id = await client.publish("order.created", {"id": 1})
        await until(lambda: len(audit.seen) == 2)
        first, second = audit.seen
        assert first.id == event_id and first.source == "tests.Client"
        assert (second.name, second.source) == ("order.audited", "shop.AuditPlugin")
        assert second.parent_id == event_id
        assert second.correlation_id == first.correlation_id
        assert await client.request("price.quote", {"sku": "PEN"}) == {"sku": "PEN", "price": 2.5}
    finally:
        await running.stop()


async def test_plugin_failing_boot_leaves_no_subscription(
    make_project: ProjectFactory, until: Until
) -> None:
    """A plugin that subscribed and then failed on_boot receives nothing and lists nothing."""
    running = await start_app(make_project(_files(), tools=TOOLS))
    try:
        kernel = running.kernel
        assert kernel.status().plugins["shop.BrokenPlugin"].status == "failed"
        bus = _bus(running)
        assert {s.subscriber for s in bus.subscriptions()} == {
            "shop.AuditPlugin",
            "shop.OrdersPlugin",
        }
        await _client(running).publish("order.created", {"id": 1})
        audit = _audit(running)
        await until(lambda: len(audit.seen) == 2)
        assert not [e for e in bus.history() if e.name.startswith("_dlq.")]
    finally:
        await running.stop()


async def test_hot_reload_swaps_the_responder(make_project: ProjectFactory) -> None:
    """After a reload the new version answers; the old subscription is gone."""
    root = make_project(_files(price=2.5), tools=TOOLS)
    running = await start_app(root)
    try:
        client = _client(running)
        assert await client.request("price.quote", {"sku": "A"}) == {"sku": "A", "price": 2.5}
        path = Path(root, "domains/shop/plugins/orders_plugin.py")
        await anyio.Path(path).write_text(ORDERS.format(price=9.0))
        report = await Reloader(running.kernel).apply([path])
        assert report.loaded == ["shop.OrdersPlugin"]
        assert await client.request("price.quote", {"sku": "A"}) == {"sku": "A", "price": 9.0}
        rows = _bus(running).subscriptions()
        assert [r.pattern for r in rows if r.subscriber == "shop.OrdersPlugin"] == ["price.quote"]
    finally:
        await running.stop()


async def test_shutdown_drains_queued_events(make_project: ProjectFactory, until: Until) -> None:
    """Stopping the app delivers what was queued before the bus closed."""
    running = await start_app(make_project(_files(), tools=TOOLS))
    audit = _audit(running)
    try:
        client = _client(running)
        for i in range(50):
            await client.publish("order.paid", {"i": i})
    finally:
        await running.stop()
    assert [e.payload["i"] for e in audit.seen] == list(range(50))


HTTP_PLUGIN = """
from microcore import Plugin

class AskPlugin(Plugin):
    def __init__(self, http, event_bus):
        self.http, self.bus = http, event_bus

    async def on_boot(self):
        self.http.add_endpoint("/ask", "GET", self.ask)
        await self.bus.subscribe("slow.answer", self.hang)

    async def ask(self, data, context):
        return await self.bus.request("slow.answer", {}, timeout=0.05)

    async def hang(self, event):
        import anyio
        await anyio.sleep(1)
"""


async def test_request_timeout_in_http_handler_answers_504(make_project: ProjectFactory) -> None:
    """A bus RequestTimeout escaping an HTTP handler becomes a 504 timeout error."""
    root = make_project(
        {"domains/qa/plugins/ask_plugin.py": HTTP_PLUGIN},
        tools=[*TOOLS, "http"],
    )
    running = await start_app(root, settings={"EVENT_BUS_DRAIN_TIMEOUT": "0.1"})
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            with anyio.fail_after(5):
                response = await http.get("/ask")
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"
    finally:
        await running.stop()
