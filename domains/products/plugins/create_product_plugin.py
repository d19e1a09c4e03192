"""POST /products: validate, insert, announce ``product.created``.

The pattern every feature follows: name the tools you need in ``__init__``,
register in ``on_boot``, do the work in an ``async`` handler.
"""

from __future__ import annotations

from typing import Any

from domains.products.models import NewProduct
from microcore import Plugin


class CreateProductPlugin(Plugin):
    def __init__(self, http: Any, db: Any, event_bus: Any, logger: Any) -> None:
        self.http, self.db, self.bus, self.logger = http, db, event_bus, logger

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/products",
            "POST",
            self.execute,
            request_model=NewProduct,
            status_code=201,
            tags=["products"],
            summary="Create a product",
        )

    async def execute(self, data: NewProduct, context: Any) -> dict[str, Any]:
        product_id = await self.db.execute(
            "INSERT INTO products (name, price) VALUES (?, ?)", (data.name, data.price)
        )
        await self.bus.publish(
            "product.created", {"id": product_id, "name": data.name, "price": data.price}
        )
        self.logger.info("product created", id=product_id)
        return {"success": True, "id": product_id}
