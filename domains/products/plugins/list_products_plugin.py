"""GET /products: every product, newest first."""

from __future__ import annotations

from typing import Any

from microcore import Plugin


class ListProductsPlugin(Plugin):
    def __init__(self, http: Any, db: Any) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/products", "GET", self.execute, tags=["products"], summary="List products"
        )

    async def execute(self, data: dict[str, Any], context: Any) -> list[dict[str, Any]]:
        return await self.db.query("SELECT id, name, price FROM products ORDER BY id DESC")
