"""Benchmark the db tool against bare aiosqlite on one connection, in the same run.

    python bench/bench_db.py [--rows 5000] [--repeat 3] [--readers 4]

Both sides use the same file settings (WAL, synchronous=NORMAL, autocommit), so
the numbers compare the tool's work (routing, locking, dict rows, error mapping)
and its reader pool against the simplest correct use of aiosqlite:

* insert: one committed INSERT per call (``execute`` vs ``conn.execute``)
* insert batched: 100 rows per call (``execute_many`` vs ``executemany`` in BEGIN/COMMIT)
* point read x1 / x32: ``query_one`` by primary key from 1 or 32 concurrent tasks
  (``execute_fetchall`` + dict on the single baseline connection)
* point read x32 + writer: the same while another task inserts without pause
  (reads/s counted; the tool's readers do not queue behind the writes)
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from microcore.testing import Kernel  # noqa: E402 - needs the repository on sys.path

SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL)"
INSERT = "INSERT INTO items (name, price) VALUES (?, ?)"
SELECT = "SELECT id, name, price FROM items WHERE id = ?"
BATCH = 100
CONCURRENCY = 32

Op = Callable[[], Awaitable[None]]


def _project(base: Path) -> Path:
    root = base / "project"
    for name in ("config", "logger", "db"):
        shutil.copytree(REPO / "tools" / name, root / "tools" / name)
    return root


async def _timed(op: Op, count: int) -> float:
    """Operations per second of one run of ``op`` (which performs ``count`` operations)."""
    started = time.perf_counter()
    await op()
    return count / (time.perf_counter() - started)


async def _concurrently(tasks: int, fn: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    async with anyio.create_task_group() as tg:
        for index in range(tasks):
            tg.start_soon(fn, index)


class Side:
    """The four workloads against one implementation."""

    def __init__(self, execute: Any, execute_many: Any, query_one: Any, rows: int) -> None:
        self.execute, self.execute_many, self.query_one = execute, execute_many, query_one
        self.rows = rows
        self.ids: list[int] = []

    async def inserts(self) -> None:
        for i in range(self.rows):
            await self.execute(INSERT, (f"item{i}", float(i)))

    async def batches(self) -> None:
        for start in range(0, self.rows, BATCH):
            await self.execute_many(INSERT, [(f"b{i}", 1.0) for i in range(start, start + BATCH)])

    async def reads(self) -> None:
        for product_id in self.ids:
            await self.query_one(SELECT, (product_id,))

    async def concurrent_reads(self) -> None:
        share = len(self.ids) // CONCURRENCY

        async def reader(index: int) -> None:
            for product_id in self.ids[index * share : (index + 1) * share]:
                await self.query_one(SELECT, (product_id,))

        await _concurrently(CONCURRENCY, reader)

    async def reads_while_writing(self) -> None:
        """The 32 readers again, while another task inserts without pause."""
        done = anyio.Event()

        async def writer() -> None:
            i = 0
            while not done.is_set():
                await self.execute(INSERT, (f"w{i}", 1.0))
                i += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await self.concurrent_reads()
            done.set()

    def workloads(self) -> dict[str, tuple[Op, int]]:
        """Each workload with the number of operations one run performs."""
        concurrent = self.rows // CONCURRENCY * CONCURRENCY
        return {
            "insert (1 row / commit)": (self.inserts, self.rows),
            f"insert batched ({BATCH} rows)": (self.batches, self.rows),
            "point read x1": (self.reads, self.rows),
            f"point read x{CONCURRENCY}": (self.concurrent_reads, concurrent),
            f"point read x{CONCURRENCY} + writer": (self.reads_while_writing, concurrent),
        }


@asynccontextmanager
async def tool_side(base: Path, rows: int, readers: int) -> AsyncIterator[tuple[Side, int]]:
    settings = {"DATABASE_URL": "sqlite:///tool.db", "LOG_LEVEL": "WARNING"}
    if readers >= 0:
        settings["DATABASE_READERS"] = str(readers)
    kernel = Kernel(_project(base), environ={}, overrides=settings)
    async with kernel.run():
        db: Any = kernel.tool("db")
        await db.execute(SCHEMA)
        readers = db._open_backend().details()["readers"]  # the backend's own boot-log figures
        yield Side(db.execute, db.execute_many, db.query_one, rows), readers


@asynccontextmanager
async def baseline_side(base: Path, rows: int) -> AsyncIterator[Side]:
    async with aiosqlite.connect(base / "bare.db", isolation_level=None) as conn:
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
            await conn.execute(f"PRAGMA {pragma}")
        await conn.execute(SCHEMA)

        async def execute(sql: str, params: Any) -> int:
            cursor = await conn.execute(sql, params)
            return cursor.lastrowid or 0

        async def execute_many(sql: str, rows: Any) -> None:
            await conn.execute("BEGIN")
            await conn.executemany(sql, rows)
            await conn.execute("COMMIT")

        async def query_one(sql: str, params: Any) -> dict[str, Any] | None:
            rows = list(await conn.execute_fetchall(sql, params))
            return dict(zip(("id", "name", "price"), rows[0], strict=True)) if rows else None

        yield Side(execute, execute_many, query_one, rows)


async def run(
    base: Path, rows: int, repeat: int, readers: int
) -> tuple[dict[str, float], dict[str, float], int]:
    """Best of ``repeat`` for each workload, the two sides alternating so drift hits both."""
    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    async with (
        tool_side(base, rows, readers) as (tool, readers),
        baseline_side(base, rows) as bare,
    ):
        await tool.inserts()  # warm up: file growth, statement caches, threads
        await bare.inserts()
        random.seed(7)
        tool.ids = bare.ids = [random.randint(1, rows) for _ in range(rows)]
        for name, (op, count) in tool.workloads().items():
            other, _ = bare.workloads()[name]
            ours[name] = theirs[name] = 0.0
            for _ in range(repeat):
                ours[name] = max(ours[name], await _timed(op, count))
                theirs[name] = max(theirs[name], await _timed(other, count))
    return ours, theirs, readers


def _table(tool: dict[str, float], bare: dict[str, float], readers: int) -> str:
    lines = [
        f"{'workload':<28}{'db tool ops/s':>15}{'aiosqlite ops/s':>17}{'ratio':>8}",
        "-" * 68,
    ]
    for name, ours in tool.items():
        theirs = bare[name]
        lines.append(f"{name:<28}{ours:>15,.0f}{theirs:>17,.0f}{ours / theirs:>7.2f}x")
    lines.append("-" * 68)
    lines.append(
        f"db tool: 1 writer + {readers} WAL readers; aiosqlite: 1 connection. "
        "ratio > 1: the db tool is faster."
    )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--readers", type=int, default=-1, help="DATABASE_READERS (default: 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tool, bare, readers = await run(Path(tmp), args.rows, args.repeat, args.readers)
    sys.stdout.write(_table(tool, bare, readers) + "\n")


if __name__ == "__main__":
    anyio.run(main)
