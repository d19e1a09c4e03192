"""An IntegrityError escaping an HTTP handler answers 409 'conflict' with the constraint,
on every driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

PLUGIN = """
from microcore import Plugin

class CreateProductPlugin(Plugin):
    def __init__(self, http, db):
        self.http, self.db = http, db

    async def on_boot(self):
        self.http.add_endpoint("/products", "POST", self.execute, status_code=201)

    async def execute(self, data, context):
        sql = "INSERT INTO products (name) VALUES (?)"
        product_id = await self.db.execute(sql, (data["name"],))
        return {"success": True, "id": product_id}
"""


async def test_integrity_error_in_handler_answers_409(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """A duplicate insert answers 409 with code 'conflict' and the failed constraint."""
    root = make_project(
        {
            "domains/shop/migrations/001_products.sql": (
                "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
            ),
            "domains/shop/migrations/001_products.postgresql.sql": (
                "CREATE TABLE products (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
            ),
            "domains/shop/plugins/create_product_plugin.py": PLUGIN,
        },
        tools=["config", "logger", "db", "http"],
    )
    running = await boot(root)
    transport = httpx.ASGITransport(app=running.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        first = await client.post("/products", json={"name": "Pen"})
        assert (first.status_code, first.json()) == (201, {"success": True, "id": 1})
        again = await client.post("/products", json={"name": "Pen"})
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "conflict"
    assert "products.name" in error["message"] or "products_name_key" in error["message"]
    for leak in ("Traceback", "sqlite3", "asyncpg", "Pen", "INSERT", "(in:"):
        assert leak not in again.text
