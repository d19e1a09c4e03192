"""Transactions: commit, rollback on any exception or cancellation, savepoints, isolation;
the same on every driver."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from microcore.testing import start_app


async def _names(db: Any) -> list[str]:
    return [r["name"] for r in await db.query("SELECT name FROM products ORDER BY id")]


async def test_transaction_commits_on_success(db: Any) -> None:
    """Every statement of a block that ends normally is kept."""
    async with db.transaction() as tx:
        product_id = await tx.execute("INSERT INTO products (name) VALUES ('Pen')")
        await tx.execute("UPDATE products SET price = 3 WHERE id = ?", (product_id,))
        assert await tx.query_one("SELECT price FROM products") == {"price": 3.0}
    assert await db.query("SELECT name, price FROM products") == [{"name": "Pen", "price": 3.0}]


async def test_transaction_rolls_back_on_exception(db: Any) -> None:
    """An exception in the block undoes all of its statements and propagates."""
    with pytest.raises(KeyError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO products (name) VALUES ('Pen')")
            raise KeyError("boom")
    assert await _names(db) == []


async def test_transaction_rolls_back_on_database_error(db: Any, errors: ModuleType) -> None:
    """A failing statement in the block rolls back the statements before it."""
    with pytest.raises(errors.IntegrityError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO products (name) VALUES ('Pen')")
            await tx.execute("INSERT INTO products (name) VALUES ('Pen')")
    assert await _names(db) == []


async def test_transaction_rolls_back_on_cancellation(db: Any) -> None:
    """A task cancelled inside a block leaves nothing behind and frees the writer."""
    inside = anyio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO products (name) VALUES ('Pen')")
            inside.set()
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await inside.wait()
            tg.cancel_scope.cancel()
        await db.execute("INSERT INTO products (name) VALUES ('Ink')")
    assert await _names(db) == ["Ink"]


async def test_nested_transaction_is_a_savepoint(db: Any) -> None:
    """A failed inner block rolls back only its own work; the outer block commits."""
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO products (name) VALUES ('outer')")
        with pytest.raises(RuntimeError):
            async with tx.transaction() as inner:
                await inner.execute("INSERT INTO products (name) VALUES ('inner')")
                raise RuntimeError("inner fails")
        async with tx.transaction() as kept:
            await kept.execute("INSERT INTO products (name) VALUES ('kept')")
    assert await _names(db) == ["outer", "kept"]


async def test_nested_db_transaction_joins_the_open_one(db: Any) -> None:
    """db.transaction() inside a block is a savepoint of it, not a deadlock."""
    with anyio.fail_after(5):
        async with db.transaction():
            await db.execute("INSERT INTO products (name) VALUES ('outer')")
            with pytest.raises(RuntimeError):
                async with db.transaction():
                    await db.execute("INSERT INTO products (name) VALUES ('inner')")
                    raise RuntimeError("inner fails")
            async with db.transaction() as deeper, deeper.transaction() as deepest:
                await deepest.execute("INSERT INTO products (name) VALUES ('deepest')")
    assert await _names(db) == ["outer", "deepest"]


async def test_outer_rollback_undoes_released_savepoints(db: Any) -> None:
    """Work of an inner block that succeeded is still undone when the outer block fails."""
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            async with tx.transaction() as inner:
                await inner.execute("INSERT INTO products (name) VALUES ('inner')")
            raise RuntimeError("outer fails")
    assert await _names(db) == []


async def test_db_calls_inside_a_block_join_the_transaction(db: Any) -> None:
    """db.execute/query inside the block see and share its uncommitted work."""
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("INSERT INTO products (name) VALUES ('Pen')")
            assert await db.query_one("SELECT name FROM products") == {"name": "Pen"}
            assert await db.execute_many("UPDATE products SET price = ?", [(1,), (2,)]) == 2
            raise RuntimeError("undo")
    assert await _names(db) == []


async def test_transaction_used_after_its_block_is_refused(db: Any, errors: ModuleType) -> None:
    """A transaction object kept past its block refuses statements with a clear error."""
    async with db.transaction() as tx:
        pass
    with pytest.raises(errors.ProgrammingError, match="this transaction has ended"):
        await tx.execute("INSERT INTO products (name) VALUES ('late')")


async def test_concurrent_transactions_see_only_whole_blocks(db: Any) -> None:
    """Blocks in flight at once never see half of another block, and all of them commit."""

    async def block(name: str) -> None:
        async with db.transaction() as tx:
            for step in range(5):
                await tx.execute("INSERT INTO products (name) VALUES (?)", (f"{name}{step}",))
                await anyio.lowlevel.checkpoint()
            count = await tx.query_one("SELECT count(*) AS n FROM products")
            assert count is not None and count["n"] % 5 == 0  # no half-done block in sight

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for name in "abcd":
                tg.start_soon(block, name)
    assert len(await _names(db)) == 20


async def test_concurrent_read_modify_write_never_loses_an_update(
    db: Any, errors: ModuleType
) -> None:
    """Read-then-write transactions from many tasks: each one commits or fails with an
    OperationalError to retry (PostgreSQL: concurrent update); none is silently lost."""
    await db.execute("CREATE TABLE counter (n INTEGER)")
    await db.execute("INSERT INTO counter (n) VALUES (0)")
    outcomes: list[str] = []

    async def bump() -> None:
        try:
            async with db.transaction() as tx:
                row = await tx.query_one("SELECT n FROM counter")
                assert row is not None
                await anyio.lowlevel.checkpoint()
                await tx.execute("UPDATE counter SET n = ?", (row["n"] + 1,))
        except errors.OperationalError as exc:
            assert "run the transaction again" in str(exc)
            outcomes.append("conflict")
        else:
            outcomes.append("commit")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(bump)
    assert len(outcomes) == 50 and "commit" in outcomes
    assert await db.query_one("SELECT n FROM counter") == {"n": outcomes.count("commit")}


async def test_savepoint_lets_a_transaction_carry_on_after_an_error(
    db: Any, errors: ModuleType
) -> None:
    """A statement expected to fail, in its own nested block, does not spoil the outer one."""
    await db.execute("INSERT INTO products (name) VALUES ('Pen')")
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO products (name) VALUES ('Ink')")
        with pytest.raises(errors.IntegrityError):
            async with tx.transaction() as attempt:
                await attempt.execute("INSERT INTO products (name) VALUES ('Pen')")
        await tx.execute("INSERT INTO products (name) VALUES ('Pad')")
    assert await _names(db) == ["Pen", "Ink", "Pad"]


async def test_wait_for_the_database_is_bounded_by_busy_timeout(
    make_project: Any, boot: Any
) -> None:
    """A statement that waits longer than DATABASE_BUSY_TIMEOUT (for SQLite's writer, for a
    pooled PostgreSQL connection) fails with 'database is busy' instead of hanging."""
    root = make_project({}, tools=["config", "logger", "db"])
    running = await boot(root, DATABASE_BUSY_TIMEOUT="0.05", DATABASE_POOL_MAX="1")
    db: Any = running.kernel.tool("db")
    error_type = sys_error(running, "OperationalError")
    await db.execute("CREATE TABLE t (x INTEGER)")
    held = anyio.Event()
    done = anyio.Event()

    async def hold() -> None:
        async with db.transaction():
            held.set()
            await done.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await held.wait()
            with pytest.raises(error_type, match="database is busy"):
                await db.execute("INSERT INTO t (x) VALUES (1)")
            done.set()
    assert await db.execute("INSERT INTO t (x) VALUES (1)") >= 0  # free again afterwards


def sys_error(running: Any, name: str) -> Any:
    """An error class of the running project's db tool."""
    import sys

    return getattr(sys.modules["tools.db"], name)


async def test_tasks_started_inside_a_block_join_it(db: Any) -> None:
    """Concurrent work started inside the block (a task group) is part of the transaction."""

    async def insert(name: str) -> None:
        await db.execute("INSERT INTO products (name) VALUES (?)", (name,))

    with pytest.raises(RuntimeError), anyio.fail_after(5):
        async with db.transaction():
            async with anyio.create_task_group() as tg:
                for name in ("a", "b", "c"):
                    tg.start_soon(insert, name)
            assert len(await _names(db)) == 3
            raise RuntimeError("undo all three")
    assert await _names(db) == []


async def test_caught_error_then_normal_end_keeps_the_work_or_raises(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """A block that catches a failed statement and ends normally never reports a commit
    that did not happen: SQLite keeps the rest; PostgreSQL (which aborted the
    transaction) raises at the end, and nothing of the block is kept."""
    await db.execute("INSERT INTO products (name) VALUES ('Pen')")

    async def block() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO products (name) VALUES ('Ink')")
            with pytest.raises(errors.IntegrityError):
                await tx.execute("INSERT INTO products (name) VALUES ('Pen')")

    if dialect.name == "postgresql":
        with pytest.raises(errors.OperationalError, match="rolled back, not committed"):
            await block()
        assert await _names(db) == ["Pen"]
    else:
        await block()
        assert await _names(db) == ["Pen", "Ink"]


async def test_overlapping_nested_blocks_in_sibling_tasks_are_refused(
    db: Any, errors: ModuleType
) -> None:
    """Two tasks of one transaction cannot hold nested blocks open at once (each would
    release or roll back the other's savepoint): the second is refused, clearly."""
    a_open, b_tried = anyio.Event(), anyio.Event()
    refused: list[BaseException] = []

    async def task_a() -> None:
        async with db.transaction():
            await db.execute("INSERT INTO products (name) VALUES ('a')")
            a_open.set()
            await b_tried.wait()

    async def task_b() -> None:
        await a_open.wait()
        try:
            async with db.transaction():
                await db.execute("INSERT INTO products (name) VALUES ('b')")
        except errors.ProgrammingError as exc:
            refused.append(exc)
        b_tried.set()

    with anyio.fail_after(10):
        async with db.transaction():
            async with anyio.create_task_group() as tg:
                tg.start_soon(task_a)
                tg.start_soon(task_b)
            async with db.transaction():  # one after the other is fine
                await db.execute("INSERT INTO products (name) VALUES ('c')")
    (error,) = refused
    assert "cannot overlap" in str(error)
    assert await _names(db) == ["a", "c"]


@pytest.mark.parametrize("nested", [False, True])
async def test_sqlite_ending_the_transaction_itself_fails_the_block(
    make_project: Callable[..., Path], nested: bool
) -> None:
    """When SQLite rolls the whole transaction back after an error (INSERT OR ROLLBACK,
    RAISE(ROLLBACK), disk full), later statements are refused instead of autocommitted,
    and the block raises: none of its work is kept."""
    running = await start_app(
        make_project({}, tools=["config", "logger", "db"]),
        settings={"DATABASE_URL": "sqlite:///data/app.db"},
    )
    try:
        db: Any = running.kernel.tool("db")
        errors = sys.modules["tools.db"]
        await db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        await db.execute("INSERT INTO products (name) VALUES ('Pen')")
        with pytest.raises(errors.OperationalError, match="rolled back"):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO products (name) VALUES ('Ink')")
                with pytest.raises(errors.IntegrityError):
                    if nested:
                        async with tx.transaction() as inner:
                            await inner.execute(
                                "INSERT OR ROLLBACK INTO products (name) VALUES ('Pen')"
                            )
                    else:
                        await tx.execute("INSERT OR ROLLBACK INTO products (name) VALUES ('Pen')")
                with pytest.raises(errors.OperationalError, match="rolled back by SQLite"):
                    await tx.execute("INSERT INTO products (name) VALUES ('Pad')")
        assert await _names(db) == ["Pen"]
        async with db.transaction() as tx:  # the connection is healthy afterwards
            await tx.execute("INSERT INTO products (name) VALUES ('Pad')")
        assert await _names(db) == ["Pen", "Pad"]
    finally:
        await running.stop()


class _FailingRollbackSession:
    """A session whose savepoint rollback fails (a broken connection, say)."""

    aborted = None

    def __init__(self) -> None:
        self.calls: list[str] = []

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_FailingRollbackSession]:
        yield self  # the backend side of the fake: one session, this one

    async def begin(self) -> None:
        self.calls.append("begin")

    async def savepoint(self, name: str) -> None:
        self.calls.append("savepoint")

    async def rollback_to_savepoint(self, name: str) -> None:
        raise RuntimeError("connection lost")

    async def release_savepoint(self, name: str) -> None:
        self.calls.append("release")

    async def commit(self) -> None:
        self.calls.append("commit")

    async def rollback(self) -> None:
        self.calls.append("rollback")


async def test_a_nested_block_that_cannot_be_undone_stops_the_commit() -> None:
    """If a failed nested block's savepoint cannot be rolled back, its work may still be
    in the transaction: the outer block rolls back and raises instead of committing."""
    from tools.db._errors import OperationalError
    from tools.db._transaction import TransactionScope

    session = _FailingRollbackSession()
    with pytest.raises(OperationalError, match="could not be rolled back"):
        async with TransactionScope(backend=session) as outer:  # type: ignore[arg-type]
            with pytest.raises(KeyError):
                async with outer.transaction():
                    raise KeyError("fails")
    assert session.calls == ["begin", "savepoint", "rollback"]


class _FailingBeginSession(_FailingRollbackSession):
    """A session whose BEGIN fails (the server went away between lease and BEGIN)."""

    def __init__(self) -> None:
        super().__init__()
        self.leased = False

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_FailingRollbackSession]:
        self.leased = True
        try:
            yield self
        finally:
            self.leased = False

    async def begin(self) -> None:
        raise RuntimeError("connection lost")


async def test_a_failed_begin_ends_the_lease_and_raises() -> None:
    """When BEGIN fails, the connection is handed back at once and the error surfaces."""
    from tools.db._transaction import TransactionScope

    session = _FailingBeginSession()
    with pytest.raises(RuntimeError, match="connection lost"):
        async with TransactionScope(backend=session):  # type: ignore[arg-type]
            pytest.fail("the block must not run")
    assert session.leased is False


async def test_a_root_scope_without_a_backend_is_refused() -> None:
    """A scope with neither a backend nor a parent transaction is a programming error."""
    from tools.db._transaction import TransactionScope

    with pytest.raises(RuntimeError, match="needs a backend"):
        async with TransactionScope():
            pytest.fail("the block must not run")
