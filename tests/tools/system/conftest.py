"""Fixtures for the system tool: a small shop whose requests cause chains of events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import httpx
import pytest_asyncio

from microcore.testing import start_app
from tests.support import BootedApp, eventually

if TYPE_CHECKING:
    from tools.http.http_tool import HttpTool
    from tools.system.system_tool import SystemTool

SYSTEM_TOOLS = ["config", "logger", "http", "event_bus", "system"]
TOKEN = "s3cret-token"
PRODUCTION = {"MICROCORE_ENV": "production", "SYSTEM_TOKEN": TOKEN}

# POST /orders publishes order.placed (and asks price.quote); billing turns it into
# invoice.created; audit fails on invoices of "bad" orders (dead letter).
SHOP: dict[str, str] = {
    "domains/shop/__init__.py": "",
    "domains/shop/plugins/order_plugin.py": """
    from microcore import Plugin

    class OrderPlugin(Plugin):
        def __init__(self, http, event_bus):
            self.http, self.bus = http, event_bus

        async def on_boot(self):
            self.http.add_endpoint("/orders", "POST", self.place, status_code=201)
            self.http.add_endpoint("/orders/{order_id:int}", "GET", self.show)
            self.http.add_endpoint("/boom", "GET", self.boom)

        async def place(self, data, context):
            price = await self.bus.request("price.quote", {"item": data["item"]})
            await self.bus.publish("order.placed", {"item": data["item"], "price": price})
            return {"success": True}

        async def show(self, data, context):
            return {"id": data["order_id"]}

        async def boom(self, data, context):
            raise RuntimeError("kaboom")
    """,
    "domains/shop/plugins/price_plugin.py": """
    from microcore import Plugin

    class PricePlugin(Plugin):
        def __init__(self, event_bus):
            self.bus = event_bus

        async def on_boot(self):
            await self.bus.subscribe("price.quote", self.quote)

        async def quote(self, event):
            return 3.5
    """,
    "domains/shop/plugins/billing_plugin.py": """
    from microcore import Plugin

    class BillingPlugin(Plugin):
        def __init__(self, event_bus):
            self.bus = event_bus

        async def on_boot(self):
            await self.bus.subscribe("order.placed", self.bill)

        async def bill(self, event):
            await self.bus.publish("invoice.created", {"item": event.payload["item"]})
    """,
    "domains/shop/plugins/audit_plugin.py": """
    from microcore import Plugin

    class AuditPlugin(Plugin):
        def __init__(self, event_bus):
            self.bus = event_bus

        async def on_boot(self):
            await self.bus.subscribe("invoice.*", self.audit)
            await self.bus.subscribe("refund.issued", self.audit)

        async def audit(self, event):
            if event.payload["item"] == "bad":
                raise ValueError("cannot audit a bad item")
    """,
}

BROKEN = {
    "domains/shop/plugins/broken_plugin.py": """
    from microcore import Plugin

    class BrokenPlugin(Plugin):
        async def on_boot(self):
            raise RuntimeError("broken on purpose")
    """,
}


class System(BootedApp):
    """A booted shop, an HTTP client over it, and helpers to look at the bus."""

    @property
    def http(self) -> HttpTool:
        return cast("HttpTool", self.kernel.tool("http"))

    @property
    def tool(self) -> SystemTool:
        return cast("SystemTool", self.kernel.tool("system"))

    async def settled(self, *, timeout: float = 5.0) -> None:
        """Wait until no subscription has queued events left."""
        await eventually(
            lambda: not any(s.queued for s in self.bus.subscriptions()), timeout=timeout
        )


class Boot(Protocol):
    """``await boot(settings={...}, files={...})``."""

    def __call__(
        self, *, settings: Mapping[str, str] | None = None, files: Mapping[str, str] | None = None
    ) -> Awaitable[System]: ...


@pytest_asyncio.fixture
async def boot(make_project: Callable[..., Path]) -> AsyncIterator[Boot]:
    """``await boot(settings={...}, files={...})``: the shop (plus ``files``), booted."""
    async with AsyncExitStack() as stack:

        async def start(
            *, settings: Mapping[str, str] | None = None, files: Mapping[str, str] | None = None
        ) -> System:
            root = make_project({**SHOP, **(files or {})}, tools=SYSTEM_TOOLS)
            running = await start_app(root, settings={"LOG_LEVEL": "WARNING", **(settings or {})})
            stack.push_async_callback(running.stop)
            transport = httpx.ASGITransport(app=running.app)
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            stack.push_async_callback(client.aclose)
            return System(running, client)

        yield start
