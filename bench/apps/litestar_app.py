"""Litestar: msgspec validation, aiosqlite, one connection."""

from __future__ import annotations

from typing import Annotated

import msgspec
from bench_sqlite import insert_product, lifespan
from litestar import Litestar, get, post


class NewProduct(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price: Annotated[float, msgspec.Meta(gt=0)]


@get("/ping")
async def ping() -> dict:
    return {"message": "pong"}


@get("/items/{item_id:int}")
async def item(item_id: int, q: str | None = None) -> dict:
    return {"id": item_id, "q": q}


@post("/products", status_code=201)
async def create_product(data: NewProduct) -> dict:
    product_id = await insert_product(data.name, data.price)
    return {"success": True, "id": product_id, "name": data.name}


app = Litestar([ping, item, create_product], lifespan=[lifespan])
