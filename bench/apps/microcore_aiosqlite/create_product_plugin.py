"""Diagnostic variant of the bench's POST /products plugin: the insert goes through aiosqlite
directly, exactly as in the Starlette, FastAPI and Litestar apps, so that row measures the
http tool's overhead apart from the db tool's. It is never used for the verdicts."""

import os
from typing import Annotated

import aiosqlite
import msgspec

from microcore import Plugin


class NewProduct(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price: Annotated[float, msgspec.Meta(gt=0)]


class CreateProductPlugin(Plugin):
    def __init__(self, http):
        self.http = http
        self.conn = None

    async def on_boot(self):
        self.conn = await aiosqlite.connect(os.environ["BENCH_DB"], isolation_level=None)
        await self.conn.execute("PRAGMA journal_mode=WAL")
        await self.conn.execute("PRAGMA synchronous=NORMAL")
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS products "
            "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)"
        )
        self.http.add_endpoint(
            "/products", "POST", self.execute, request_model=NewProduct, status_code=201
        )

    async def execute(self, data, context):
        row = await self.conn.execute_insert(
            "INSERT INTO products (name, price) VALUES (?, ?)", (data.name, data.price)
        )
        return {"success": True, "id": row[0] if row else None, "name": data.name}

    async def shutdown(self):
        await self.conn.close()
