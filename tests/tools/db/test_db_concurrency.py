"""Concurrency: reads in parallel next to an open transaction, the event loop never blocked;
SQLite's single writer serializes transactions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from microcore.testing import start_app

SLOW_QUERY = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000)
SELECT sum(i) AS total FROM n
"""


@pytest.fixture(params=["file", "postgresql"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """A database several connections share: a SQLite file (WAL) or PostgreSQL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return "sqlite:///data/app.db"


async def test_reads_do_not_wait_for_an_open_transaction(
    make_project: Callable[..., Path], shared_url: str
) -> None:
    """Reads answer from the last commit while a transaction is open."""
    running = await start_app(
        make_project({}, tools=["config", "logger", "db"]),
        settings={"DATABASE_URL": shared_url},
    )
    try:
        db: Any = running.kernel.tool("db")
        await db.execute("CREATE TABLE t (x INTEGER)")
        await db.execute("INSERT INTO t VALUES (1)")
        seen: list[Any] = []
        go = anyio.Event()

        async def read() -> None:
            await go.wait()
            seen.append(await db.query("SELECT x FROM t"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(read)  # started outside the block: not part of it
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (2)")
                    go.set()
                    while len(seen) < 8:
                        await anyio.lowlevel.checkpoint()
        assert seen == [[{"x": 1}]] * 8
        assert await db.query("SELECT x FROM t ORDER BY x") == [{"x": 1}, {"x": 2}]
    finally:
        await running.stop()


async def test_many_concurrent_readers_all_answer(db: Any) -> None:
    """32 concurrent point reads with writes in between all get their row."""
    ids = [
        await db.execute("INSERT INTO products (name) VALUES (?)", (f"p{i}",)) for i in range(32)
    ]
    results: dict[int, Any] = {}

    async def read(product_id: int) -> None:
        results[product_id] = await db.query_one(
            "SELECT name FROM products WHERE id = ?", (product_id,)
        )

    async def write(n: int) -> None:
        await db.execute("INSERT INTO products (name) VALUES (?)", (f"extra{n}",))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for product_id in ids:
                tg.start_soon(read, product_id)
                tg.start_soon(write, product_id)
    assert results == {pid: {"name": f"p{i}"} for i, pid in enumerate(ids)}


@pytest.mark.parametrize("kind", ["read", "write"])
async def test_slow_statement_does_not_block_the_event_loop(db: Any, kind: str) -> None:
    """While a slow statement runs, other tasks keep running (it runs off the loop thread)."""
    ticks = 0
    finished = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not finished.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    sql = (
        SLOW_QUERY
        if kind == "read"
        else "INSERT INTO products (name) "
        + (SLOW_QUERY.replace("sum(i) AS total", "'p' || max(i)"))
    )
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await db.query(sql)
            finished.set()
    assert ticks > 100


async def test_fast_read_passes_a_slow_read(
    make_project: Callable[..., Path], shared_url: str
) -> None:
    """With several connections, a point read does not queue behind a slow report."""
    running = await start_app(
        make_project({}, tools=["config", "logger", "db"]),
        settings={"DATABASE_URL": shared_url, "DATABASE_READERS": "2"},
    )
    try:
        db: Any = running.kernel.tool("db")
        order: list[str] = []

        async def slow() -> None:
            await db.query(SLOW_QUERY.replace("400000", "2000000"))
            order.append("slow")

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                for _ in range(10):  # let the slow read reach its connection's thread
                    await anyio.lowlevel.checkpoint()
                assert await db.query_one("SELECT 1 AS one") == {"one": 1}
                order.append("fast")
        assert order == ["fast", "slow"]
    finally:
        await running.stop()


async def test_sqlite_transactions_run_one_after_the_other(
    make_project: Callable[..., Path],
) -> None:
    """On SQLite, blocks in flight at once never interleave (one writer) and every
    read-modify-write commits."""
    running = await start_app(
        make_project({}, tools=["config", "logger", "db"]),
        settings={"DATABASE_URL": "sqlite:///data/app.db"},
    )
    try:
        db: Any = running.kernel.tool("db")
        await db.execute("CREATE TABLE counter (n INTEGER)")
        await db.execute("INSERT INTO counter (n) VALUES (0)")
        log: list[tuple[str, int]] = []

        async def block(name: str) -> None:
            async with db.transaction() as tx:
                for step in range(5):
                    row = await tx.query_one("SELECT n FROM counter")
                    log.append((name, step))
                    await anyio.lowlevel.checkpoint()
                    await tx.execute("UPDATE counter SET n = ?", (row["n"] + 1,))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for name in "abcdefgh":
                    tg.start_soon(block, name)
        owners = [name for name, _ in log]
        assert all(owners[i : i + 5] == [owners[i]] * 5 for i in range(0, len(owners), 5))
        assert await db.query_one("SELECT n FROM counter") == {"n": 40}
    finally:
        await running.stop()


async def test_sqlite_autocommit_write_never_joins_another_tasks_transaction(
    make_project: Callable[..., Path],
) -> None:
    """A write from another task waits for an open transaction and survives its rollback;
    writes from many tasks at once all land (they pipeline on the writer's thread)."""
    running = await start_app(
        make_project({}, tools=["config", "logger", "db"]),
        settings={"DATABASE_URL": "sqlite:///data/app.db"},
    )
    try:
        db: Any = running.kernel.tool("db")
        await db.execute("CREATE TABLE t (x INTEGER)")
        inside, finish = anyio.Event(), anyio.Event()
        order: list[str] = []

        async def rolled_back() -> None:
            with pytest.raises(RuntimeError):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (1)")
                    inside.set()
                    await finish.wait()
                    order.append("rollback")
                    raise RuntimeError("undo")

        async def outsider() -> None:
            await inside.wait()
            finish.set()
            await db.execute("INSERT INTO t VALUES (2)")
            order.append("outsider")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rolled_back)
                tg.start_soon(outsider)
            async with anyio.create_task_group() as tg:
                for x in range(100, 300):
                    tg.start_soon(db.execute, "INSERT INTO t VALUES (?)", (x,))
        assert order == ["rollback", "outsider"]
        rows = await db.query("SELECT x FROM t ORDER BY x")
        assert [r["x"] for r in rows] == [2, *range(100, 300)]
    finally:
        await running.stop()
