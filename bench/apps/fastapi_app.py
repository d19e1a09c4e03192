"""FastAPI: pydantic validation, aiosqlite, one connection."""

from __future__ import annotations

from bench_sqlite import insert_product, lifespan
from fastapi import FastAPI
from pydantic import BaseModel, Field


class NewProduct(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    price: float = Field(gt=0)


app = FastAPI(lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict:
    return {"message": "pong"}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None) -> dict:
    return {"id": item_id, "q": q}


@app.post("/products", status_code=201)
async def create_product(data: NewProduct) -> dict:
    product_id = await insert_product(data.name, data.price)
    return {"success": True, "id": product_id, "name": data.name}
