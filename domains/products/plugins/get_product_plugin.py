"""GET /products/{product_id}: one product, or 404."""

from __future__ import annotations

import msgspec

from domains.products.models import Product, ProductId
from microcore import Plugin
from tools.db import Db
from tools.http import Context, Http, NotFound


class GetProductPlugin(Plugin):
    def __init__(self, http: Http, db: Db) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint("/products/{product_id:int}", "GET", self.execute, tags=["products"])

    async def execute(self, data: ProductId, context: Context) -> Product:
        """Get one product"""
        row = await self.db.query_one(
            "SELECT id, name, price FROM products WHERE id = ?", (data.product_id,)
        )
        if row is None:
            raise NotFound(f"product {data.product_id} not found")
        return msgspec.convert(row, Product)
