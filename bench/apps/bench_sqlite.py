"""The SQLite set-up shared by the baseline apps: one aiosqlite connection, WAL, autocommit."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

DB: dict[str, aiosqlite.Connection] = {}
INSERT = "INSERT INTO products (name, price) VALUES (?, ?)"


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Open ``$BENCH_DB`` (table ``products``) for the app's lifetime, as ``DB["conn"]``."""
    conn = await aiosqlite.connect(os.environ["BENCH_DB"], isolation_level=None)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS products "
        "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)"
    )
    DB["conn"] = conn
    try:
        yield
    finally:
        await conn.close()


async def insert_product(name: str, price: float) -> int | None:
    """One autocommit insert (one hop to the connection's thread); the new row id."""
    row = await DB["conn"].execute_insert(INSERT, (name, price))
    return row[0] if row else None
