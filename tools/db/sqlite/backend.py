"""The SQLite backend: aiosqlite connections, one writer and a small pool of WAL readers.

* Every connection runs on its own aiosqlite thread; each operation is one function
  shipped to that thread (one hop), so no sqlite call ever runs on the event loop.
* Writes are serialized on the single writer connection behind a FIFO lock whose
  wait is bounded by the busy timeout. A session (transaction, migration) holds
  that lock, hence the connection, until it ends: transactions never interleave.
* Reads run concurrently on reader connections (``PRAGMA query_only``), each sent
  to the reader with the least work queued; WAL lets them proceed while the writer
  writes. A statement that turns out to write is refused by the reader and retried
  on the writer.
* ``:memory:`` has one connection for everything (a private in-memory database
  cannot be shared between connections without shared-cache locking errors).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import aiosqlite
import anyio
import msgspec
import structlog

from microcore.tooling import ConfigurationError
from tools.config import Config

from .._backend import Params, Row, busy_timeout
from .._errors import DatabaseError, OperationalError
from .._sql import first_line
from .._url import DatabaseURL
from .errors import from_sqlite
from .sql import is_insert, is_read, split_script

__all__ = ("SYNCHRONOUS_MODES", "SqliteBackend", "SqliteOptions", "SqliteSession")

T = TypeVar("T")

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

_log = structlog.get_logger("microcore.db", tool="db")


class SqliteOptions(msgspec.Struct, frozen=True):
    """Tuning from settings: DATABASE_SYNCHRONOUS, DATABASE_BUSY_TIMEOUT, DATABASE_READERS."""

    synchronous: str = "NORMAL"
    busy_timeout: float = 5.0
    readers: int = 4

    @classmethod
    def from_config(cls, config: Config) -> SqliteOptions:
        """The options the settings give, or a ConfigurationError naming the bad one."""
        synchronous = (config.get("DATABASE_SYNCHRONOUS") or "NORMAL").strip().upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"DATABASE_SYNCHRONOUS must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                f"got {synchronous!r}"
            )
        busy = busy_timeout(config)
        readers = config.get_int("DATABASE_READERS", 4)
        if not 0 <= readers <= 64:
            raise ConfigurationError(f"DATABASE_READERS must be between 0 and 64, got {readers}")
        return cls(synchronous=synchronous, busy_timeout=busy, readers=readers)


class _ReadOnly:
    """A reader connection refused the statement because it writes."""


_READ_ONLY = _ReadOnly()

# -- functions that run on a connection's own thread -------------------------------


def _fetch(
    conn: sqlite3.Connection, sql: str, params: Params, one: bool, reader: bool
) -> list[Row] | _ReadOnly:
    try:
        cursor = conn.execute(sql, params)
    except sqlite3.OperationalError as exc:
        if reader and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY:
            return _READ_ONLY
        raise
    try:
        if cursor.description is None:
            return []
        names = [column[0] for column in cursor.description]
        if one:
            row = cursor.fetchone()
            return [] if row is None else [dict(zip(names, row, strict=True))]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()  # ends a reader's implicit read transaction at once


def _execute(conn: sqlite3.Connection, sql: str, params: Params, insert: bool) -> int:
    cursor = conn.execute(sql, params)
    try:
        if cursor.description is not None:
            cursor.fetchall()  # a RETURNING clause: run the statement to completion
        if insert:
            return (cursor.lastrowid or 0) if cursor.rowcount > 0 else 0
        return max(cursor.rowcount, 0)
    finally:
        cursor.close()


def _execute_many(conn: sqlite3.Connection, sql: str, rows: list[Params], atomic: bool) -> int:
    if atomic:
        conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.executemany(sql, rows)
        count = max(cursor.rowcount, 0)
        cursor.close()
        if atomic:
            conn.execute("COMMIT")
        return count
    except BaseException:
        if atomic and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statement(conn: sqlite3.Connection, sql: str) -> None:
    conn.execute(sql).close()


def _in_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` inside an open transaction; note on its error when SQLite ended the
    transaction because of it (``INSERT OR ROLLBACK``, ``RAISE(ROLLBACK)``, disk full)."""
    try:
        return fn(conn, *args)
    except BaseException as exc:
        if not conn.in_transaction:
            exc.add_note(_ENDED)
        raise


_ENDED = "microcore: SQLite rolled the transaction back"


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls back on its own after some errors (disk full, ...): only roll back what is open.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _configure(conn: sqlite3.Connection, pragmas: list[str]) -> list[Any]:
    results = []
    for pragma in pragmas:
        row = conn.execute(pragma).fetchone()
        results.append(row[0] if row else None)
    return results


# -- connections ---------------------------------------------------------------------


class _Connection:
    """One aiosqlite connection. ``call`` runs ``fn(sqlite3_connection, *args)`` on its thread."""

    __slots__ = ("_raw", "_run", "pending")

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self._raw = raw
        self.pending = 0  # operations queued or running on this connection's thread
        # aiosqlite's own queue-to-thread primitive: one hop for a whole operation (execute,
        # fetch, close cursor) instead of one per call, and the cursor never leaves its thread.
        self._run = cast(Callable[..., Awaitable[Any]], raw._execute)

    async def call(self, sql: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            result = await self._run(fn, self._raw._conn, *args)
        except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as exc:
            raise from_sqlite(exc, sql) from exc
        return cast(T, result)

    async def close(self) -> None:
        await self._raw.close()


async def _busy_retry(seconds: float, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)``, retried while the database is busy or locked, for ``seconds``.

    Switching a file to WAL needs it to itself for a moment, and SQLite may refuse that
    at once (without its busy handler) while another process opens the same file:
    replicas booting together on a fresh file.
    """
    deadline = anyio.current_time() + seconds
    pause = 0.005
    while True:
        try:
            return await fn(*args)
        except OperationalError as exc:
            code = getattr(exc.__cause__, "sqlite_errorcode", 0) & 0xFF
            if code not in _BUSY_CODES or anyio.current_time() + pause > deadline:
                raise
        await anyio.sleep(pause)  # backoff between attempts, bounded by the busy timeout
        pause = min(pause * 2, 0.1)


_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


async def _open(database: str, *, options: SqliteOptions) -> _Connection:
    raw = aiosqlite.connect(
        database,
        isolation_level=None,  # autocommit: transactions are explicit BEGIN ... COMMIT
        timeout=options.busy_timeout,
        cached_statements=256,
    )
    try:
        await raw
    except sqlite3.Error as exc:
        raise OperationalError(f"cannot open the database {database!r}: {exc}") from exc
    return _Connection(raw)


class SqliteSession:
    """The writer connection, held exclusively by one transaction or migration."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.in_transaction = False
        self.aborted: str | None = None

    async def _call(self, sql: str, fn: Callable[..., T], *args: Any) -> T:
        """A statement of the open transaction; refused once SQLite has ended it."""
        if self.aborted is not None:
            raise OperationalError(
                f"the transaction was rolled back by SQLite after an earlier error "
                f"({self.aborted}); end the block and run it again",
                statement=first_line(sql),
            )
        if not self.in_transaction:
            return await self._conn.call(sql, fn, *args)
        try:
            return await self._conn.call(sql, _in_transaction, fn, *args)
        except DatabaseError as exc:
            if _ENDED in getattr(exc.__cause__, "__notes__", ()):
                self.aborted = exc.reason
            raise

    async def query(self, sql: str, params: Params, *, one: bool) -> list[Row]:
        rows = await self._call(sql, _fetch, sql, params, one and is_read(sql), False)
        return cast(list[Row], rows)

    async def execute(self, sql: str, params: Params) -> int:
        return await self._call(sql, _execute, sql, params, is_insert(sql))

    async def execute_many(self, sql: str, rows: list[Params]) -> int:
        return await self._call(sql, _execute_many, sql, rows, False)

    async def run_script(self, script: str) -> None:
        for statement in split_script(script):
            await self._call(statement, _statement, statement)

    async def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so another process cannot make us fail mid-way.
        # The flag goes first: if the caller is cancelled while BEGIN runs, the lease still
        # rolls back (a rollback with nothing open is a no-op).
        self.in_transaction = True
        await self._conn.call("BEGIN IMMEDIATE", _statement, "BEGIN IMMEDIATE")

    async def begin_exclusive(self) -> None:
        """BEGIN IMMEDIATE already excludes every other writer, in any process."""
        await self.begin()

    async def commit(self) -> None:
        await self._call("COMMIT", _statement, "COMMIT")
        self.in_transaction = False

    async def rollback(self) -> None:
        await self._conn.call("ROLLBACK", _rollback)
        self.in_transaction = False
        self.aborted = None

    async def savepoint(self, name: str) -> None:
        await self._call(f"SAVEPOINT {name}", _statement, f'SAVEPOINT "{name}"')

    async def release_savepoint(self, name: str) -> None:
        await self._call(f"RELEASE {name}", _statement, f'RELEASE "{name}"')

    async def rollback_to_savepoint(self, name: str) -> None:
        await self._call(f"ROLLBACK TO {name}", _statement, f'ROLLBACK TO "{name}"')


class SqliteBackend:
    """SQLite through aiosqlite: one writer connection and ``options.readers`` readers."""

    dialect = "sqlite"

    def __init__(self, url: DatabaseURL, options: SqliteOptions) -> None:
        self.url = url
        self.options = options
        self.description = str(url)
        self.journal_mode = ""
        self._writer: _Connection | None = None
        self._lock = anyio.Lock()
        self._readers: list[_Connection] = []

    # -- lifecycle -------------------------------------------------------------------

    def details(self) -> dict[str, object]:
        """The journal mode and the number of reader connections, for the boot log."""
        return {"journal_mode": self.journal_mode, "readers": len(self._readers)}

    async def open(self) -> None:
        """Connect the writer (switching the file to WAL), then the readers."""
        options = self.options
        busy_ms = int(options.busy_timeout * 1000)
        common = [f"PRAGMA busy_timeout = {busy_ms}", "PRAGMA foreign_keys = ON"]
        try:
            if self.url.path is None:
                self._writer = await _open(":memory:", options=options)
                await self._writer.call("PRAGMA", _configure, common)
                self.journal_mode = "memory"
                return
            path = self.url.path
            await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
            self._writer = await _open(str(path), options=options)
            (mode, *_) = await _busy_retry(
                options.busy_timeout,
                self._writer.call,
                "PRAGMA journal_mode",
                _configure,
                [
                    "PRAGMA journal_mode = WAL",
                    f"PRAGMA synchronous = {options.synchronous}",
                    *common,
                ],
            )
            self.journal_mode = str(mode).lower()
            if self.journal_mode != "wal":
                _log.warning("db_wal_unavailable", journal_mode=self.journal_mode, path=str(path))
                return  # without WAL, readers would block the writer: keep one connection
            for _ in range(options.readers):
                reader = await _open(str(path), options=options)
                self._readers.append(reader)
                await reader.call("PRAGMA", _configure, [*common, "PRAGMA query_only = ON"])
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()
            raise

    async def close(self) -> None:
        """Close every connection (the last one to close checkpoints the WAL)."""
        readers, self._readers = self._readers, []
        writer, self._writer = self._writer, None
        for conn in readers:
            await self._close(conn)
        if writer is not None:
            await self._close(writer)

    async def _close(self, conn: _Connection) -> None:
        try:
            await conn.close()
        except (sqlite3.Error, ValueError):
            _log.exception("db_close_failed", database=self.description)

    # -- connections -----------------------------------------------------------------

    async def _acquire_writer(self) -> _Connection:
        """The writer connection, alone (release ``_lock`` after); waits at most the busy
        timeout. A plain method rather than a context manager: this is the hot path."""
        writer = self._writer
        if writer is None:
            raise OperationalError("the database is closed (the app is shutting down)")
        try:
            self._lock.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(self.options.busy_timeout):
                    await self._lock.acquire()
            except TimeoutError:
                raise OperationalError(
                    f"database is busy: waited {self.options.busy_timeout:g} s for the writer, "
                    "which a long transaction holds; keep transactions short "
                    "or raise DATABASE_BUSY_TIMEOUT"
                ) from None
        return writer

    def _reader(self) -> _Connection:
        """The reader with the least work queued; the first one when all are idle, so a
        trickle of reads keeps one thread warm and a burst spreads over all of them."""
        best = self._readers[0]
        for conn in self._readers:
            if conn.pending < best.pending:
                best = conn
        return best

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SqliteSession]:
        """Lease the writer connection exclusively (transactions, migrations)."""
        session = SqliteSession(await self._acquire_writer())
        try:
            yield session
        finally:
            try:
                if session.in_transaction:  # the lease ends mid-transaction: never leak it
                    with anyio.CancelScope(shield=True):
                        await session.rollback()
            finally:
                self._lock.release()

    # -- statements ------------------------------------------------------------------

    async def query(self, sql: str, params: Params, *, one: bool) -> list[Row]:
        read = is_read(sql)
        if read and self._readers:
            conn = self._reader()
            conn.pending += 1  # reads need no exclusivity: they queue on the thread in order
            try:
                rows = await conn.call(sql, _fetch, sql, params, one, True)
            finally:
                conn.pending -= 1
            if not isinstance(rows, _ReadOnly):
                return rows
        return cast(list[Row], await self._on_writer(sql, _fetch, sql, params, one and read, False))

    async def execute(self, sql: str, params: Params) -> int:
        return await self._on_writer(sql, _execute, sql, params, is_insert(sql))

    async def execute_many(self, sql: str, rows: list[Params]) -> int:
        return await self._on_writer(sql, _execute_many, sql, rows, True)

    async def _on_writer(self, sql: str, fn: Callable[..., T], *args: Any) -> T:
        """Run one autocommit operation on the writer's thread.

        When no transaction holds the writer, the operation is queued on the writer's
        thread at once, without taking the lock: the thread runs its queue in order, so
        concurrent writes pipeline instead of waiting for each other's round trip. The
        check and the queueing happen in one step of the event loop (aiosqlite queues
        before its first await), and a transaction that starts later queues its BEGIN
        behind them, so an autocommit write never runs inside someone's transaction.
        """
        writer = self._writer
        if writer is not None and not self._lock.locked():
            return await writer.call(sql, fn, *args)
        conn = await self._acquire_writer()
        try:
            return await conn.call(sql, fn, *args)
        finally:
            self._lock.release()
