"""DELETE /products/{product_id}: remove a product (204), announce ``product.deleted``, or 404."""

from __future__ import annotations

from domains.products.models import ProductId
from microcore import Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.http import Context, Http, NotFound


class DeleteProductPlugin(Plugin):
    def __init__(self, http: Http, db: Db, event_bus: EventBus) -> None:
        self.http, self.db, self.bus = http, db, event_bus

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/products/{product_id:int}", "DELETE", self.execute, status_code=204, tags=["products"]
        )

    async def execute(self, data: ProductId, context: Context) -> None:
        """Delete a product"""
        async with self.db.transaction() as tx:  # the delete and its event commit together
            deleted = await tx.execute("DELETE FROM products WHERE id = ?", (data.product_id,))
            if not deleted:
                raise NotFound(f"product {data.product_id} not found")
            await self.bus.publish("product.deleted", data, transaction=tx)
