"""POST /products: validate, insert, announce ``product.created`` (committed together).

The pattern every feature follows: name the tools you need in ``__init__``
(typed, so your editor and mypy know them), register in ``on_boot``, do the work
in an ``async`` handler. The handler's annotations are its models: ``data:
NewProduct`` is validated before it runs (422 naming the field otherwise) and
the returned ``Product`` is the documented response.
"""

from __future__ import annotations

from domains.products.models import NewProduct, Product
from microcore import Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.http import Context, Http
from tools.logger import Logger


class CreateProductPlugin(Plugin):
    def __init__(self, http: Http, db: Db, event_bus: EventBus, logger: Logger) -> None:
        self.http, self.db, self.bus, self.logger = http, db, event_bus, logger

    async def on_boot(self) -> None:
        self.http.add_endpoint(
            "/products", "POST", self.execute, status_code=201, tags=["products"]
        )

    async def execute(self, data: NewProduct, context: Context) -> Product:
        """Create a product"""
        async with self.db.transaction() as tx:  # the row and its event commit together
            product_id = await tx.execute(
                "INSERT INTO products (name, price) VALUES (?, ?)", (data.name, data.price)
            )
            product = Product(id=product_id, name=data.name, price=data.price)
            await self.bus.publish("product.created", product, transaction=tx)
        self.logger.info("product created", id=product_id)
        return product
