from typing import Annotated

import msgspec

from microcore import Plugin


class NewProduct(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price: Annotated[float, msgspec.Meta(gt=0)]


class CreateProductPlugin(Plugin):
    def __init__(self, http, db):
        self.http, self.db = http, db

    async def on_boot(self):
        self.http.add_endpoint(
            "/products", "POST", self.execute, request_model=NewProduct, status_code=201
        )

    async def execute(self, data, context):
        product_id = await self.db.execute(
            "INSERT INTO products (name, price) VALUES (?, ?)", (data.name, data.price)
        )
        return {"success": True, "id": product_id, "name": data.name}
