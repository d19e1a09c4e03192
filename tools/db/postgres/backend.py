"""The PostgreSQL backend: an asyncpg pool behind the same API as SQLite.

* **Placeholders**: ``?`` becomes ``$1 .. $n`` outside literals, quoted names, comments
  and dollar quotes (see ``sql.py``); ``??`` is a literal ``?`` (jsonb operators).
  Parameters are a tuple or a list; named parameters (a dict) are SQLite-only.
* **Row id of an INSERT** (``execute``): an ``INSERT`` without ``RETURNING`` into a
  table with an integer column named ``id`` runs with ``RETURNING id`` appended and
  answers the ``id`` of the last row it inserted (0 if it inserted none: ``ON CONFLICT
  DO NOTHING``; an upsert that updates answers the updated row's id). Whether a table
  has such a column is looked up once per table and forgotten when a CREATE, ALTER or
  DROP runs through the tool. Into a table without one, ``execute`` answers the number
  of rows inserted. An INSERT with its own ``RETURNING`` answers the returned ``id`` of
  the last row if it returns one, else the number of rows.
* **execute_many** pipelines every row in one round trip and one implicit transaction,
  counting affected rows through an appended ``RETURNING 1``; it runs INSERT, UPDATE
  and DELETE only, as SQLite's.
* **Transactions** run at ``DATABASE_ISOLATION`` (default ``repeatable read``: reads see
  one snapshot, and a row changed by a concurrent transaction since fails the write with
  an ``OperationalError`` to retry instead of losing an update). After a failed
  statement PostgreSQL refuses the rest of the transaction; a savepoint
  (``async with tx.transaction():``) around a statement expected to fail carries on.
* **Waits are bounded** by ``DATABASE_BUSY_TIMEOUT``: for a connection from the pool
  (``DATABASE_POOL_MIN`` .. ``DATABASE_POOL_MAX``) and, as ``lock_timeout``, for locks.
* **Migrations** run statement by statement inside a transaction that holds an advisory
  lock, so replicas booting together apply each file once.

Session state set with a bare ``SET`` stays on the pooled connection that ran it: use
``SET LOCAL`` inside a transaction, or server settings in the URL (``?search_path=app``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
import msgspec
import structlog

from microcore.tooling import ConfigurationError
from tools.config import Config

from .._backend import Params, Row, busy_timeout
from .._errors import DatabaseError, OperationalError, ProgrammingError
from .._sql import first_line
from .._url import DatabaseURL
from .errors import DRIVER_ERRORS, from_postgres
from .sql import Analysis, analyze, split_script, with_returning

__all__ = ("ISOLATION_LEVELS", "PostgresBackend", "PostgresOptions", "PostgresSession")

ISOLATION_LEVELS = ("read committed", "repeatable read", "serializable")

_log = structlog.get_logger("microcore.db", tool="db")

_CONNECT_TIMEOUT = 10.0  # seconds to open one connection
_CLOSE_TIMEOUT = 5.0  # seconds for the pool to close gracefully before it is terminated
_MIN_WAIT = 0.05  # a pool acquire needs a few loop turns even when a connection is idle
_MIGRATION_LOCK = 7883941965834973042  # pg_advisory_xact_lock key: b"microcor"
_MIGRATION_LOCK_TIMEOUT = "300s"  # a replica waits this long for another one's migration
_DDL = frozenset({"CREATE", "ALTER", "DROP"})
_DML = frozenset({"INSERT", "UPDATE", "DELETE"})
_COUNTED = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})

_HAS_ID = """SELECT rel.oid IS NOT NULL AS found, EXISTS (
    SELECT 1 FROM pg_attribute a
    WHERE a.attrelid = rel.oid AND a.attname = 'id' AND NOT a.attisdropped
      AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
) AS has_id
FROM (SELECT to_regclass($1) AS oid) AS rel"""


class PostgresOptions(msgspec.Struct, frozen=True):
    """Tuning from settings: DATABASE_POOL_MIN/MAX, DATABASE_BUSY_TIMEOUT, DATABASE_ISOLATION."""

    pool_min: int = 1
    pool_max: int = 10
    busy_timeout: float = 5.0
    isolation: str = "repeatable read"

    @classmethod
    def from_config(cls, config: Config) -> PostgresOptions:
        """The options the settings give, or a ConfigurationError naming the bad one."""
        pool_min = config.get_int("DATABASE_POOL_MIN", 1)
        pool_max = config.get_int("DATABASE_POOL_MAX", 10)
        if not 1 <= pool_max <= 1000:
            raise ConfigurationError(
                f"DATABASE_POOL_MAX must be between 1 and 1000, got {pool_max}"
            )
        if not 0 <= pool_min <= pool_max:
            raise ConfigurationError(
                f"DATABASE_POOL_MIN must be between 0 and DATABASE_POOL_MAX ({pool_max}), "
                f"got {pool_min}"
            )
        raw = config.get("DATABASE_ISOLATION") or "repeatable read"
        isolation = " ".join(raw.replace("_", " ").replace("-", " ").lower().split())
        if isolation not in ISOLATION_LEVELS:
            raise ConfigurationError(
                f"DATABASE_ISOLATION must be one of {', '.join(ISOLATION_LEVELS)}, got {raw!r}"
            )
        return cls(
            pool_min=pool_min,
            pool_max=pool_max,
            busy_timeout=busy_timeout(config),
            isolation=isolation,
        )


def _plan(sql: str, params: Params) -> tuple[Analysis, Sequence[Any]]:
    """The translated statement, or a ProgrammingError worded as SQLite words it."""
    if isinstance(params, Mapping):
        raise ProgrammingError(
            "named parameters (a dict) work on SQLite only; write ? placeholders and pass "
            "a tuple or a list",
            statement=first_line(sql),
        )
    analysis = analyze(sql)
    if analysis.several:
        raise ProgrammingError(
            "You can only execute one statement at a time.", statement=first_line(sql)
        )
    if analysis.mixed:
        raise ProgrammingError(
            "the statement mixes ? placeholders with $n parameters; write ? only",
            statement=first_line(sql),
        )
    if len(params) != analysis.params:
        raise ProgrammingError(
            "Incorrect number of bindings supplied. The current statement uses "
            f"{analysis.params}, and there are {len(params)} supplied.",
            statement=first_line(sql),
        )
    return analysis, params


def _count(status: str) -> int:
    """Rows affected, from a command tag: ``INSERT 0 3`` -> 3, ``UPDATE 2`` -> 2."""
    words = status.split()
    if words and words[0] in _COUNTED and words[-1].isdigit():
        return int(words[-1])
    return 0


def _returned_id(rows: list[Any]) -> int:
    if rows and "id" in rows[-1] and isinstance(rows[-1]["id"], int):
        return int(rows[-1]["id"])
    return len(rows)


class PostgresSession:
    """One pooled connection, held exclusively by one transaction or migration.

    Calls are serialized: tasks started inside a transaction block share it safely.
    """

    def __init__(self, backend: PostgresBackend, conn: Any) -> None:
        self._backend = backend
        self._conn = conn
        self._lock = anyio.Lock()
        self.in_transaction = False
        self.aborted: str | None = None  # PostgreSQL refuses statements itself, and says
        # so at COMMIT (see :meth:`commit`)
        self.ran_ddl = False  # the schema may have changed: the backend forgets its cache

    async def _run(self, sql: str, command: str) -> str:
        async with self._lock:
            try:
                return str(await self._conn.execute(command))
            except DRIVER_ERRORS as exc:
                raise from_postgres(exc, sql) from exc

    async def query(self, sql: str, params: Params, *, one: bool) -> list[Row]:
        async with self._lock:
            return await self._backend.fetch(self._conn, sql, params, one=one, session=self)

    async def execute(self, sql: str, params: Params) -> int:
        async with self._lock:
            return await self._backend.run(self._conn, sql, params, session=self)

    async def execute_many(self, sql: str, rows: list[Params]) -> int:
        async with self._lock:
            return await self._backend.run_many(self._conn, sql, rows)

    async def run_script(self, script: str) -> None:
        self.ran_ddl = True
        try:
            for statement in split_script(script):
                await self._run(statement, statement)
        finally:
            self._backend.forget_tables()

    async def begin(self) -> None:
        self.in_transaction = True  # first: a cancelled BEGIN still rolls back at lease end
        level = self._backend.options.isolation.upper()
        await self._run("BEGIN", f"BEGIN ISOLATION LEVEL {level}")

    async def begin_exclusive(self) -> None:
        """Begin a transaction no other exclusive one (in any process) runs beside.

        READ COMMITTED: once the lock is held, reads see what the previous holder committed.
        """
        self.in_transaction = True
        await self._run(
            "BEGIN",
            "BEGIN ISOLATION LEVEL READ COMMITTED; "
            f"SET LOCAL lock_timeout = '{_MIGRATION_LOCK_TIMEOUT}'; "
            f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})",
        )

    async def commit(self) -> None:
        status = await self._run("COMMIT", "COMMIT")
        self.in_transaction = False
        if status != "COMMIT":  # an aborted transaction answers COMMIT with ROLLBACK
            raise OperationalError(
                "the transaction was rolled back, not committed: a statement in it failed "
                "and PostgreSQL aborted it. To go on after an error, run the statement in a "
                "nested db.transaction() (a savepoint) and catch the error outside it",
                statement="COMMIT",
            )

    async def rollback(self) -> None:
        await self._run("ROLLBACK", "ROLLBACK")
        self.in_transaction = False

    async def savepoint(self, name: str) -> None:
        await self._run(f"SAVEPOINT {name}", f'SAVEPOINT "{name}"')

    async def release_savepoint(self, name: str) -> None:
        await self._run(f"RELEASE {name}", f'RELEASE SAVEPOINT "{name}"')

    async def rollback_to_savepoint(self, name: str) -> None:
        await self._run(f"ROLLBACK TO {name}", f'ROLLBACK TO SAVEPOINT "{name}"')


async def _keep_session_state(conn: Any) -> None:
    """Pool reset hook: asyncpg's own rolls back an open transaction before calling it;
    skipping its RESET ALL round trip halves the cost of a pooled call."""


class PostgresBackend:
    """PostgreSQL through an asyncpg pool; see the module docstring for the rules."""

    dialect = "postgresql"

    def __init__(self, url: DatabaseURL, options: PostgresOptions) -> None:
        self.url = url
        self.options = options
        self.description = str(url)
        self._pool: Any = None
        self._id_tables: dict[str, bool] = {}
        self._schema_generation = 0  # bumped by every forget: a lookup older than it is stale

    # -- lifecycle -------------------------------------------------------------------

    def details(self) -> dict[str, object]:
        """The pool bounds, for the boot log."""
        return {"pool_min": self.options.pool_min, "pool_max": self.options.pool_max}

    def _server_settings(self) -> dict[str, str]:
        """Ours, unless the URL sets them (asyncpg lets our keyword win otherwise)."""
        given = parse_qs(urlsplit(self.url.dsn).query)
        lock_ms = max(1, round(self.options.busy_timeout * 1000))
        ours = {"application_name": "microcore", "lock_timeout": f"{lock_ms}ms"}
        return {key: value for key, value in ours.items() if key not in given}

    async def open(self) -> None:
        """Open the pool (``DATABASE_POOL_MIN`` connections now, more on demand)."""
        try:
            self._pool = await asyncpg.create_pool(
                self.url.dsn,
                min_size=self.options.pool_min,
                max_size=self.options.pool_max,
                timeout=_CONNECT_TIMEOUT,
                server_settings=self._server_settings(),
                reset=_keep_session_state,
            )
        except (*DRIVER_ERRORS, ValueError) as exc:
            reason = str(exc).strip() or type(exc).__name__
            raise OperationalError(
                f"cannot connect to PostgreSQL at {self.description}: {reason}; check "
                "DATABASE_URL and that the server is running and accepts this user"
            ) from exc

    async def close(self) -> None:
        """Close the pool: gracefully within a deadline, then by force."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT) as scope:
            try:
                await pool.close()
            except DRIVER_ERRORS:
                _log.exception("db_close_failed", database=self.description)
        if scope.cancelled_caught:
            _log.warning("db_close_timeout", database=self.description)
            pool.terminate()

    # -- connections -----------------------------------------------------------------

    async def _acquire(self) -> Any:
        pool = self._pool
        if pool is None:
            raise OperationalError("the database is closed (the app is shutting down)")
        wait = max(self.options.busy_timeout, _MIN_WAIT)
        try:
            return await pool.acquire(timeout=wait)
        except TimeoutError:
            raise OperationalError(
                f"database is busy: waited {wait:g} s for one of the "
                f"{self.options.pool_max} connections (DATABASE_POOL_MAX), all in use; keep "
                "transactions short, or raise DATABASE_POOL_MAX or DATABASE_BUSY_TIMEOUT"
            ) from None
        except DRIVER_ERRORS as exc:
            raise from_postgres(exc, None) from exc

    async def _release(self, conn: Any) -> None:
        pool = self._pool
        if pool is None:  # closed meanwhile: the pool no longer takes connections back
            _discard(conn)
            return
        with anyio.CancelScope(shield=True):
            try:
                await pool.release(conn)
            except DRIVER_ERRORS:  # the pool terminated it and will open a fresh one
                _log.warning("db_connection_dropped", database=self.description)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[PostgresSession]:
        """Lease one connection exclusively (transactions, migrations)."""
        conn = await self._acquire()
        session = PostgresSession(self, conn)
        try:
            yield session
        finally:
            if session.ran_ddl:  # committed or rolled back: what others learned meanwhile
                self.forget_tables()  # may describe either schema
            try:
                if session.in_transaction:  # the lease ends mid-transaction: never leak it
                    with anyio.CancelScope(shield=True):
                        await session.rollback()
            except Exception:  # noqa: BLE001 - a broken connection must not reach the pool
                _log.exception("db_rollback_failed", database=self.description)
                _discard(conn)
            finally:
                await self._release(conn)

    # -- statements on a connection (the pool's or a session's) ----------------------

    def forget_tables(self) -> None:
        """Forget which tables have an ``id`` column (the schema changed)."""
        self._id_tables.clear()
        self._schema_generation += 1

    async def _has_id(self, conn: Any, table: str | None) -> bool:
        """Whether ``table`` has an ``id`` column (an INSERT then returns the new id).

        Remembered only when nothing can make the answer stale: not learned inside a
        transaction (its schema changes may roll back) and no DDL ran meanwhile.
        """
        if table is None:
            return False
        known = self._id_tables.get(table)
        if known is None:
            generation = self._schema_generation
            row = await conn.fetchrow(_HAS_ID, table)
            known = bool(row["has_id"])
            # a missing table fails the INSERT itself: nothing to remember
            if (
                row["found"]
                and generation == self._schema_generation
                and not conn.is_in_transaction()
            ):
                self._id_tables[table] = known
        return known

    def _ddl(self, session: PostgresSession | None) -> None:
        self.forget_tables()
        if session is not None:
            session.ran_ddl = True

    async def fetch(
        self,
        conn: Any,
        sql: str,
        params: Params,
        *,
        one: bool,
        session: PostgresSession | None = None,
    ) -> list[Row]:
        analysis, args = _plan(sql, params)
        ddl = analysis.verb in _DDL
        try:
            if ddl:
                self._ddl(session)
            if one:
                row = await conn.fetchrow(analysis.sql, *args)
                return [] if row is None else [dict(row)]
            return [dict(row) for row in await conn.fetch(analysis.sql, *args)]
        except DRIVER_ERRORS as exc:
            raise from_postgres(exc, sql) from exc
        finally:
            if ddl:  # lookups that ran beside the statement may have seen the old schema
                self.forget_tables()

    async def run(
        self, conn: Any, sql: str, params: Params, *, session: PostgresSession | None = None
    ) -> int:
        analysis, args = _plan(sql, params)
        ddl = analysis.verb in _DDL
        try:
            if ddl:
                self._ddl(session)
            elif analysis.verb == "INSERT":
                if analysis.returning:
                    return _returned_id(await conn.fetch(analysis.sql, *args))
                if await self._has_id(conn, analysis.table):
                    rows = await conn.fetch(with_returning(analysis, "id"), *args)
                    return int(rows[-1][0]) if rows else 0
            return _count(await conn.execute(analysis.sql, *args))
        except DRIVER_ERRORS as exc:
            raise from_postgres(exc, sql) from exc
        finally:
            if ddl:  # lookups that ran beside the statement may have seen the old schema
                self.forget_tables()

    async def run_many(self, conn: Any, sql: str, rows: list[Params]) -> int:
        analysis = analyze(sql)
        for row in rows:
            _plan(sql, row)
        if analysis.main not in _DML:
            raise ProgrammingError(
                "execute_many runs INSERT, UPDATE or DELETE statements only",
                statement=first_line(sql),
            )
        if not rows:
            return 0
        statement = analysis.sql if analysis.returning else with_returning(analysis, "1")
        try:
            return len(await conn.fetchmany(statement, rows))
        except DRIVER_ERRORS as exc:
            raise from_postgres(exc, sql) from exc

    # -- the backend API: each call on a pooled connection----------------------------

    async def _resync(self, conn: Any) -> None:
        """After a failed statement, make sure the server closed its implicit transaction
        before the connection serves anyone else: when asyncpg refuses an argument it
        cannot encode, the statement's Parse was sent without a Sync, and the next
        BEGIN ISOLATION LEVEL on that connection would fail. One simple query closes it
        (errors are rare: the round trip costs nothing in the common case)."""
        with anyio.CancelScope(shield=True):
            try:
                await conn.execute("SELECT 1")
            except DRIVER_ERRORS:
                _discard(conn)

    async def query(self, sql: str, params: Params, *, one: bool) -> list[Row]:
        conn = await self._acquire()
        try:
            return await self.fetch(conn, sql, params, one=one)
        except DatabaseError:
            await self._resync(conn)
            raise
        finally:
            await self._release(conn)

    async def execute(self, sql: str, params: Params) -> int:
        conn = await self._acquire()
        try:
            return await self.run(conn, sql, params)
        except DatabaseError:
            await self._resync(conn)
            raise
        finally:
            await self._release(conn)

    async def execute_many(self, sql: str, rows: list[Params]) -> int:
        """All rows or none: asyncpg pipelines them in one implicit transaction."""
        conn = await self._acquire()
        try:
            return await self.run_many(conn, sql, rows)
        except DatabaseError:
            await self._resync(conn)
            raise
        finally:
            await self._release(conn)


def _discard(conn: Any) -> None:
    """Close a broken connection so the pool opens a fresh one. When the server dropped it,
    asyncpg may already have detached it from its pool proxy: then there is nothing to do."""
    try:
        conn.terminate()
    except DRIVER_ERRORS:
        _log.debug("db_connection_already_released")
