"""GET /products/stats: how many products were created (counted from ``product.created``).

Plugins never call each other: this one learns about new products from the bus
and keeps its count in the ``state`` tool (which survives hot reloads).
"""

from __future__ import annotations

from typing import Any

from domains.products.models import Product
from microcore import Event, Plugin
from tools.event_bus import EventBus
from tools.http import Context, Http
from tools.logger import Logger
from tools.state import State


class ProductStatsPlugin(Plugin):
    def __init__(self, http: Http, event_bus: EventBus, state: State, logger: Logger) -> None:
        self.http, self.bus, self.state, self.logger = http, event_bus, state, logger

    async def on_boot(self) -> None:
        await self.bus.subscribe("product.created", self.on_created)
        self.http.add_endpoint("/products/stats", "GET", self.stats, tags=["products"])

    async def on_created(self, event: Event[Product]) -> None:
        total = await self.state.incr("products", "created")
        self.logger.info("product counted", id=event.payload.id, total=total)

    async def stats(self, data: dict[str, Any], context: Context) -> dict[str, Any]:
        """How many products were created since the app started"""
        return {"created": await self.state.get("products", "created", 0)}
