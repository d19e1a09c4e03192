"""GET /products: every product, newest first."""

from __future__ import annotations

from typing import Any

import msgspec

from domains.products.models import Product
from microcore import Plugin
from tools.db import Db
from tools.http import Context, Http


class ListProductsPlugin(Plugin):
    def __init__(self, http: Http, db: Db) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint("/products", "GET", self.execute, tags=["products"])

    async def execute(self, data: dict[str, Any], context: Context) -> list[Product]:
        """List products"""
        rows = await self.db.query("SELECT id, name, price FROM products ORDER BY id DESC")
        return msgspec.convert(rows, list[Product])
