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
        # The row and its event commit together (transactional outbox): the event is
        # relayed once the row is committed, so the 201 depends on the commit alone.
        async with self.db.transaction() as tx:
            product_id = await tx.execute(
                "INSERT INTO products (name, price) VALUES (?, ?)", (data.name, data.price)
            )
            await self.bus.publish(
                "product.created",
                {"id": product_id, "name": data.name, "price": data.price},
                transaction=tx,
            )
        self.logger.info("product created", id=product_id)
        return Product(id=product_id, name=data.name, price=data.price)
