"""GET /products/{product_id}: one product, or 404."""

from __future__ import annotations

from typing import Any

from domains.products.models import ProductId
from microcore import Plugin


class GetProductPlugin(Plugin):
    def __init__(self, http: Any, db: Any) -> None:
        self.http, self.db = http, db

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/products/{product_id:int}",
            "GET",
            self.execute,
            request_model=ProductId,
            tags=["products"],
            summary="Get one product",
        )

    async def execute(self, data: ProductId, context: Any) -> dict[str, Any]:
        row = await self.db.query_one(
            "SELECT id, name, price FROM products WHERE id = ?", (data.product_id,)
        )
        if row is None:
            context.set_status(404)
            return {
                "success": False,
                "error": {"code": "not_found", "message": f"product {data.product_id} not found"},
            }
        return row
