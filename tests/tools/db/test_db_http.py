"""Database errors escaping an HTTP handler answer in the error shape, on every backend:
an IntegrityError 409 'conflict' with the constraint, a parameter the database cannot
hold 400 'invalid_parameter' (issue #14: never a 500)."""

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
        self.http.add_endpoint("/products/lookup", "POST", self.lookup)

    async def execute(self, data, context):
        sql = "INSERT INTO products (name) VALUES (?)"
        product_id = await self.db.execute(sql, (data["name"],))
        return {"success": True, "id": product_id}

    async def lookup(self, data, context):
        sql = "SELECT * FROM products WHERE id = ?"
        return await self.db.query_one(sql, (data["id"],)) or {}
"""

# The first integer past the id column: SQLite's 64-bit INTEGER, PostgreSQL's SERIAL (int4).
PAST_THE_COLUMN = {"sqlite": 9223372036854775808, "postgresql": 2147483648}


def _project(make_project: Callable[..., Path]) -> Path:
    return make_project(
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


async def test_integrity_error_in_handler_answers_409(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """A duplicate insert answers 409 with code 'conflict' and the failed constraint."""
    running = await boot(_project(make_project))
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


async def test_parameter_past_the_column_in_handler_answers_400(
    make_project: Callable[..., Path], boot: Any, dialect: Any
) -> None:
    """An id past what the column holds answers 400 'invalid_parameter' (not 500), without
    SQL, the value or a traceback; the app serves on. (A JSON body, not a path parameter:
    whatever the http tool makes of a huge path segment, the database answer is pinned.)"""
    running = await boot(_project(make_project))
    transport = httpx.ASGITransport(app=running.app)
    too_big = PAST_THE_COLUMN[dialect.name]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        reply = await client.post("/products/lookup", json={"id": too_big})
        after = await client.post("/products/lookup", json={"id": 1})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_parameter"
    for leak in ("Traceback", "sqlite3", "asyncpg", "SELECT", "(in:", str(too_big)):
        assert leak not in reply.text
    assert (after.status_code, after.json()) == (200, {})
