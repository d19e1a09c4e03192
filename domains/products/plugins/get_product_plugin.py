"""GET /products/{product_id}: one product, or 404; answers `product.get` for other domains."""

from __future__ import annotations

import msgspec

from domains.products.models import Product, ProductId
from microcore import Event, Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.http import Context, Http, NotFound


class GetProductPlugin(Plugin):
    def __init__(self, http: Http, db: Db, event_bus: EventBus) -> None:
        self.http, self.db, self.bus = http, db, event_bus

    async def on_boot(self) -> None:
        self.http.add_endpoint("/products/{product_id:int}", "GET", self.execute, tags=["products"])
        await self.bus.respond("product.get", self.on_get)

    async def execute(self, data: ProductId, context: Context) -> Product:
        """Get one product"""
        product = await self.find(data.product_id)
        if product is None:
            raise NotFound(f"product {data.product_id} not found")
        return product

    async def on_get(self, event: Event[ProductId]) -> Product | None:
        """The reply to `product.get`: the product, or None when there is none."""
        return await self.find(event.payload.product_id)

    async def find(self, product_id: int) -> Product | None:
        row = await self.db.query_one(
            "SELECT id, name, price FROM products WHERE id = ?", (product_id,)
        )
        return None if row is None else msgspec.convert(row, Product)
