"""DELETE /products/{product_id}: remove it (204), announce ``product.deleted``, or 404."""

from __future__ import annotations

from typing import Any

from domains.products.models import ProductId
from microcore import Plugin


class DeleteProductPlugin(Plugin):
    def __init__(self, http: Any, db: Any, event_bus: Any) -> None:
        self.http, self.db, self.bus = http, db, event_bus

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/products/{product_id:int}",
            "DELETE",
            self.execute,
            request_model=ProductId,
            status_code=204,
            tags=["products"],
            summary="Delete a product",
        )

    async def execute(self, data: ProductId, context: Any) -> dict[str, Any] | None:
        deleted = await self.db.execute("DELETE FROM products WHERE id = ?", (data.product_id,))
        if not deleted:
            context.set_status(404)
            return {
                "success": False,
                "error": {"code": "not_found", "message": f"product {data.product_id} not found"},
            }
        await self.bus.publish("product.deleted", {"id": data.product_id})
        return None
