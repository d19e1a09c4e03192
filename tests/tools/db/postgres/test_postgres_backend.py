"""What only PostgreSQL has: the INSERT row-id rule, ``??`` for ``?`` operators, the
pool, isolation, lock timeouts, its settings and connection failures."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from microcore.testing import RunningApp, start_app
from tests.support import eventually, present

TOOLS = ["config", "logger", "db"]


@pytest.fixture
async def pg(make_project: Callable[..., Path], postgres_url: str) -> AsyncIterator[Any]:
    """The db tool booted on a fresh PostgreSQL schema."""
    root = make_project({}, tools=TOOLS)
    running = await start_app(root, settings={"DATABASE_URL": postgres_url})
    try:
        yield running.kernel.tool("db")
    finally:
        await running.stop()


@pytest.fixture
def errors(pg: Any) -> ModuleType:
    """The running project's ``tools.db`` facade: its error classes."""
    return sys.modules["tools.db"]


async def _boot(make_project: Callable[..., Path], url: str, **settings: str) -> RunningApp:
    return await start_app(
        make_project({}, tools=TOOLS), settings={"DATABASE_URL": url, **settings}
    )


# -- values that do not fit: the caller's input (400), not the statement (500) --------


@pytest.mark.parametrize(
    ("sql", "value", "reason"),
    [
        ("SELECT ?::text::integer", "abc", 'invalid input syntax for type integer: "abc"'),
        ("SELECT ?::text::integer + 2147483647", "5", "integer out of range"),
        ("SELECT ?::text::date", "2024-13-45", "date/time field value out of range"),
        ("SELECT ?::text::jsonb", "{nope", "invalid input syntax for type json"),
        ("SELECT ?::text", "a\x00b", "invalid byte sequence"),
    ],
)
async def test_postgres_server_data_errors_are_data_errors(
    pg: Any, errors: ModuleType, sql: str, value: str, reason: str
) -> None:
    """The server refusing a value (SQLSTATE 22P02, 22003, 22008, 22P02 json, 22021) is a
    DataError: 400 'invalid_parameter', the server's reason kept for the log."""
    with pytest.raises(errors.DataError) as info:
        await pg.query(sql, (value,))
    assert (info.value.http_status, info.value.code) == (400, "invalid_parameter")
    assert reason in info.value.reason


async def test_postgres_value_too_long_for_its_column_is_a_data_error(
    pg: Any, errors: ModuleType
) -> None:
    """A string past varchar(n) (SQLSTATE 22001) is a DataError naming the type."""
    await pg.execute("CREATE TABLE codes (code varchar(3))")
    with pytest.raises(errors.DataError, match=r"value too long for type character varying\(3\)"):
        await pg.execute("INSERT INTO codes (code) VALUES (?)", ("abcdef",))


async def test_postgres_division_by_zero_stays_a_programming_error(
    pg: Any, errors: ModuleType
) -> None:
    """Other data exceptions (22012) are the statement's doing: ProgrammingError, a 500."""
    with pytest.raises(errors.ProgrammingError) as info:
        await pg.query("SELECT 1 / ?::integer", (0,))
    assert not isinstance(info.value, errors.DataError)
    assert info.value.http_status is None


# -- the INSERT row-id rule -----------------------------------------------------------


async def test_postgres_insert_without_integer_id_answers_rows_inserted(pg: Any) -> None:
    """Into a table without an integer id column, execute answers how many rows went in."""
    await pg.execute("CREATE TABLE tags (name TEXT PRIMARY KEY)")
    await pg.execute("CREATE TABLE notes (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), t TEXT)")
    assert await pg.execute("INSERT INTO tags (name) VALUES ('a'), ('b'), (?)", ("c",)) == 3
    assert await pg.execute("INSERT INTO notes (t) VALUES (?)", ("x",)) == 1
    skipped = await pg.execute("INSERT INTO tags (name) VALUES ('a') ON CONFLICT DO NOTHING")
    assert skipped == 0


async def test_postgres_insert_row_id_follows_schema_changes(pg: Any) -> None:
    """A table dropped and created again without an id column is looked up afresh."""
    await pg.execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT)")
    assert await pg.execute("INSERT INTO t (v) VALUES ('a')") == 1
    assert await pg.execute("INSERT INTO t (v) VALUES ('b')") == 2
    await pg.execute("DROP TABLE t")
    await pg.execute("CREATE TABLE t (v TEXT)")
    assert await pg.execute("INSERT INTO t (v) VALUES ('a'), ('b')") == 2


async def test_postgres_schema_change_through_query_is_followed_too(pg: Any) -> None:
    """DDL sent through ``query`` (``ALTER ... RETURNING`` nothing) also forgets what was
    learned about the table: the next INSERT answers by the new schema."""
    await pg.execute("CREATE TABLE t (v TEXT)")
    assert await pg.execute("INSERT INTO t (v) VALUES ('a'), ('b')") == 2
    assert await pg.query("ALTER TABLE t ADD COLUMN id BIGSERIAL") == []
    assert await pg.query_one("ALTER TABLE t ALTER COLUMN v SET DEFAULT 'x'") is None
    assert await pg.execute("INSERT INTO t (v) VALUES ('c')") == 3


async def test_postgres_insert_into_qualified_quoted_table_answers_its_id(pg: Any) -> None:
    """Schema-qualified and quoted table names find their id column too."""
    schema = (await pg.query_one("SELECT current_schema() AS s"))["s"]
    await pg.execute('CREATE TABLE "Odd Name" (id SERIAL PRIMARY KEY, v TEXT)')
    await pg.execute('INSERT INTO "Odd Name" (v) VALUES (?)', ("a",))
    assert await pg.execute(f'INSERT INTO {schema}."Odd Name" (v) VALUES (?)', ("b",)) == 2


async def test_postgres_upsert_that_updates_answers_the_row_id(pg: Any) -> None:
    """INSERT ... ON CONFLICT DO UPDATE answers the id of the row it updated."""
    await pg.execute("CREATE TABLE t (id SERIAL PRIMARY KEY, k TEXT UNIQUE, n INT)")
    await pg.execute("INSERT INTO t (k, n) VALUES ('a', 1), ('b', 1)")
    upsert = "INSERT INTO t (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + 1"
    assert await pg.execute(upsert, ("a",)) == 1
    assert await pg.query_one("SELECT n FROM t WHERE k = 'a'") == {"n": 2}


async def test_postgres_insert_with_own_returning_without_id_answers_rows(pg: Any) -> None:
    """An INSERT returning other columns answers the number of rows it returned."""
    await pg.execute("CREATE TABLE t (id SERIAL PRIMARY KEY, v TEXT)")
    assert await pg.execute("INSERT INTO t (v) VALUES ('a'), ('b') RETURNING v") == 2


# -- placeholders -----------------------------------------------------------------------


async def test_postgres_double_question_mark_is_the_question_mark_operator(pg: Any) -> None:
    """jsonb's ?, ?| and ?& are written ??, ??| and ??& next to ? placeholders."""
    await pg.execute("CREATE TABLE docs (body JSONB)")
    await pg.execute("INSERT INTO docs VALUES (?::jsonb)", ('{"a": 1, "b": 2}',))
    row = await pg.query_one(
        "SELECT body ?? ? AS has, body ??| ? AS any, body ??& ? AS every FROM docs",
        ("a", ["x", "b"], ["a", "x"]),
    )
    assert row == {"has": True, "any": True, "every": False}


async def test_postgres_native_parameters_alone_work_and_mixed_are_refused(
    pg: Any, errors: ModuleType
) -> None:
    """$1 parameters pass through; mixing them with ? is refused, naming the fix."""
    assert await pg.query_one("SELECT $1::int + $2::int AS n", (1, 2)) == {"n": 3}
    with pytest.raises(errors.ProgrammingError, match="mixes \\? placeholders with \\$n"):
        await pg.query("SELECT $1::int, ?::int", (1, 2))


async def test_postgres_named_parameters_are_refused(pg: Any, errors: ModuleType) -> None:
    """A dict of parameters (SQLite's :name style) is refused with the portable way."""
    with pytest.raises(errors.ProgrammingError, match=r"named parameters .* SQLite only"):
        await pg.query("SELECT 1", {"a": 1})


async def test_postgres_execute_many_runs_dml_only(pg: Any, errors: ModuleType) -> None:
    """execute_many of a SELECT is refused, as on SQLite."""
    with pytest.raises(errors.ProgrammingError, match="INSERT, UPDATE or DELETE"):
        await pg.execute_many("SELECT ?::int", [(1,), (2,)])


# -- transactions -----------------------------------------------------------------------


async def test_postgres_failed_statement_spoils_its_transaction_with_a_hint(
    pg: Any, errors: ModuleType
) -> None:
    """After an error PostgreSQL refuses the rest of the block; the error says to use a
    savepoint, and the block rolls back."""
    await pg.execute("CREATE TABLE t (k TEXT UNIQUE)")
    await pg.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(errors.ProgrammingError, match=r"in its own 'async with tx\.transaction"):
        async with pg.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES ('b')")
            with pytest.raises(errors.IntegrityError):
                await tx.execute("INSERT INTO t VALUES ('a')")
            await tx.execute("INSERT INTO t VALUES ('c')")
    assert await pg.query("SELECT k FROM t") == [{"k": "a"}]


@pytest.mark.parametrize(
    ("setting", "level"),
    [
        (None, "repeatable read"),
        ("serializable", "serializable"),
        ("READ_COMMITTED", "read committed"),
        ("repeatable-read", "repeatable read"),
    ],
)
async def test_postgres_transactions_run_at_database_isolation(
    make_project: Callable[..., Path], postgres_url: str, setting: str | None, level: str
) -> None:
    """Blocks run at DATABASE_ISOLATION (default repeatable read); plain calls do not."""
    extra = {"DATABASE_ISOLATION": setting} if setting else {}
    running = await _boot(make_project, postgres_url, **extra)
    try:
        db: Any = running.kernel.tool("db")
        async with db.transaction() as tx:
            assert await tx.query_one("SHOW transaction_isolation") == {
                "transaction_isolation": level
            }
        outside = await db.query_one("SHOW transaction_isolation")
        assert outside == {"transaction_isolation": "read committed"}
    finally:
        await running.stop()


async def test_postgres_lock_wait_is_bounded_by_busy_timeout(
    make_project: Callable[..., Path], postgres_url: str
) -> None:
    """A statement waiting for a row lock longer than DATABASE_BUSY_TIMEOUT fails 'busy'."""
    running = await _boot(make_project, postgres_url, DATABASE_BUSY_TIMEOUT="0.1")
    try:
        db: Any = running.kernel.tool("db")
        error = sys.modules["tools.db"].OperationalError
        await db.execute("CREATE TABLE t (n INT)")
        await db.execute("INSERT INTO t VALUES (0)")
        assert await db.query_one("SHOW lock_timeout") == {"lock_timeout": "100ms"}
        locked, done = anyio.Event(), anyio.Event()

        async def hold() -> None:
            async with db.transaction() as tx:
                await tx.execute("UPDATE t SET n = 1")
                locked.set()
                await done.wait()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)  # started outside the block: not part of it
                await locked.wait()
                with pytest.raises(error, match="database is busy"):
                    await db.execute("UPDATE t SET n = 2")
                done.set()
        assert await db.query_one("SELECT n FROM t") == {"n": 1}
    finally:
        await running.stop()


async def test_postgres_url_server_settings_win_over_ours(
    make_project: Callable[..., Path], postgres_url: str
) -> None:
    """A server setting in DATABASE_URL (?lock_timeout=...) is kept as given."""
    running = await _boot(make_project, f"{postgres_url}&lock_timeout=1234ms")
    try:
        db: Any = running.kernel.tool("db")
        assert await db.query_one("SHOW lock_timeout") == {"lock_timeout": "1234ms"}
    finally:
        await running.stop()


# -- the pool ---------------------------------------------------------------------------


async def test_postgres_pool_bounds_the_connections(
    make_project: Callable[..., Path], postgres_url: str
) -> None:
    """Concurrent calls share at most DATABASE_POOL_MAX connections."""
    running = await _boot(make_project, postgres_url, DATABASE_POOL_MAX="2")
    try:
        db: Any = running.kernel.tool("db")
        pids: set[int] = set()

        async def call() -> None:
            row = await db.query_one("SELECT pg_backend_pid() AS pid, pg_sleep(0.01)")
            pids.add(row["pid"])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(call)
        assert len(pids) == 2
    finally:
        await running.stop()


async def test_postgres_cancelled_query_stops_on_the_server(pg: Any, postgres_url: str) -> None:
    """A call cancelled mid-query stops the server's work, and the pool serves on."""
    import asyncpg

    started = anyio.Event()
    marker = "microcore_cancel_probe"

    async def slow() -> None:
        started.set()
        await pg.query(f"SELECT pg_sleep(30) AS {marker}")

    async def running_queries(conn: Any, count: int) -> bool:
        rows = await conn.fetch(
            "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 "
            "AND pid <> pg_backend_pid()",
            f"%AS {marker}%",
        )
        return len(rows) == count

    admin = await asyncpg.connect(postgres_url)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                await started.wait()
                await eventually(lambda: running_queries(admin, 1))
                tg.cancel_scope.cancel()
            await eventually(lambda: running_queries(admin, 0))
            assert await pg.query_one("SELECT 1 AS one") == {"one": 1}
    finally:
        await admin.close()


async def test_postgres_pool_replaces_connections_the_server_dropped(
    pg: Any, postgres_url: str
) -> None:
    """After the server ends a pooled connection (a restart, a failover), calls work again:
    at most the first one fails, with an OperationalError."""
    import asyncpg

    pid = (await pg.query_one("SELECT pg_backend_pid() AS pid"))["pid"]  # the pool's only one
    admin = await asyncpg.connect(postgres_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    error = sys.modules["tools.db"].OperationalError
    with anyio.fail_after(10):
        for _ in range(3):  # at most one call per dropped connection may fail
            try:
                assert await pg.query_one("SELECT 1 AS one") == {"one": 1}
                break
            except error as exc:
                assert "lost the connection" in str(exc) or "terminat" in str(exc)
        else:
            pytest.fail("the pool did not recover")


# -- settings and failures --------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"DATABASE_POOL_MAX": "0"}, "DATABASE_POOL_MAX must be between 1 and 1000"),
        ({"DATABASE_POOL_MIN": "5", "DATABASE_POOL_MAX": "2"}, "DATABASE_POOL_MIN must be"),
        ({"DATABASE_ISOLATION": "chaos"}, "DATABASE_ISOLATION must be one of read committed"),
        ({"DATABASE_BUSY_TIMEOUT": "-1"}, "DATABASE_BUSY_TIMEOUT must be >= 0"),
    ],
)
async def test_postgres_bad_settings_fail_the_db_tool(
    make_project: Callable[..., Path], settings: dict[str, str], message: str
) -> None:
    """A bad pool or isolation setting fails the db tool with the fix in the message."""
    running = await _boot(make_project, "postgresql://nobody@127.0.0.1:1/none", **settings)
    try:
        tool = running.kernel.status().tools["db"]
        assert tool.status == "failed"
        assert message in present(tool.error).message
    finally:
        await running.stop()


async def test_postgres_unreachable_server_fails_the_tool_without_the_password(
    make_project: Callable[..., Path],
) -> None:
    """A server that does not answer fails the db tool, naming the URL but not its password."""
    running = await _boot(make_project, "postgresql://app:s3cret@127.0.0.1:1/shop")
    try:
        tool = running.kernel.status().tools["db"]
        assert tool.status == "failed"
        message = present(tool.error).message
        assert "cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:1/shop" in message
        assert "s3cret" not in message
    finally:
        await running.stop()


async def test_postgres_without_asyncpg_says_how_to_install_it(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without asyncpg installed, a postgresql:// URL fails the tool with the install line."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    running = await _boot(make_project, "postgresql://app@127.0.0.1/shop")
    try:
        tool = running.kernel.status().tools["db"]
        assert "pip install 'microcore[postgres]'" in present(tool.error).message
    finally:
        await running.stop()


# -- the INSERT row-id rule across schema changes -------------------------------------


async def test_insert_id_rule_forgets_a_rolled_back_add_column(pg: Any) -> None:
    """A transaction adds an ``id`` column, inserts, then rolls back: later INSERTs into
    the table still work (no ``RETURNING id`` for a column that no longer exists)."""
    await pg.execute("CREATE TABLE tags (name TEXT PRIMARY KEY)")
    with pytest.raises(RuntimeError):
        async with pg.transaction() as tx:
            await tx.execute("ALTER TABLE tags ADD COLUMN id BIGSERIAL")
            await tx.execute("INSERT INTO tags (name) VALUES ('x')")
            raise RuntimeError("roll the schema change back")
    assert await pg.execute("INSERT INTO tags (name) VALUES ('a')") == 1


async def test_insert_id_rule_forgets_a_rolled_back_drop_column(pg: Any) -> None:
    """The reverse: after a rolled-back DROP COLUMN id, INSERT still answers the new id."""
    await pg.execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT)")
    for v in ("a", "b"):
        await pg.execute("INSERT INTO t (v) VALUES (?)", (v,))
    with pytest.raises(RuntimeError):
        async with pg.transaction() as tx:
            await tx.execute("ALTER TABLE t DROP COLUMN id")
            await tx.execute("INSERT INTO t (v) VALUES ('x')")
            raise RuntimeError("roll the schema change back")
    new_id = await pg.execute("INSERT INTO t (v) VALUES ('c')")
    assert await pg.query_one("SELECT id FROM t WHERE v = 'c'") == {"id": new_id}


async def test_insert_id_rule_is_not_learned_from_the_old_schema_during_ddl(
    make_project: Callable[..., Path], postgres_url: str
) -> None:
    """An INSERT on another connection while ``ALTER TABLE ... ADD COLUMN id`` waits for a
    lock sees the old table; once the ALTER commits, INSERT answers the new id."""
    import asyncpg

    running = await start_app(
        make_project({}, tools=TOOLS),
        settings={"DATABASE_URL": postgres_url, "DATABASE_BUSY_TIMEOUT": "30"},
    )
    pg: Any = running.kernel.tool("db")
    blocker = await asyncpg.connect(postgres_url.split("?")[0])
    try:
        schema = postgres_url.rsplit("search_path=", 1)[1]
        await pg.execute("CREATE TABLE t (v TEXT)")
        await blocker.execute("BEGIN")
        await blocker.execute(f"LOCK TABLE {schema}.t IN ACCESS SHARE MODE")

        async def waits(count: int) -> bool:
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 't' AND NOT l.granted"
            )
            return int(waiting) >= count

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pg.execute, "ALTER TABLE t ADD COLUMN id BIGSERIAL")
                await eventually(lambda: waits(1), timeout=15)  # the ALTER waits for our lock
                tg.start_soon(pg.execute, "INSERT INTO t (v) VALUES ('during')")
                # the INSERT looked the table up in the old catalog, and now waits too
                await eventually(lambda: waits(2), timeout=15)
                await blocker.execute("COMMIT")
        new_id = await pg.execute("INSERT INTO t (v) VALUES ('after')")
        assert await pg.query_one("SELECT id FROM t WHERE v = 'after'") == {"id": new_id}
    finally:
        await blocker.close()
        await running.stop()
