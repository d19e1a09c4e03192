"""The database error hierarchy: driver exceptions never leak, they are translated here.

Every error names the statement it is about (its first line), keeps the driver's
reason in ``reason`` and chains the driver exception (``raise ... from exc``)::

    try:
        await db.execute("INSERT INTO products (name) VALUES (?)", ("Pen",))
    except IntegrityError as exc:       # 409 "conflict" when it escapes an HTTP handler
        exc.reason                      # 'UNIQUE constraint failed: products.name'
"""

from __future__ import annotations

import sqlite3

from microcore.tooling import MicroCoreError

from ._sql import first_line

__all__ = (
    "DatabaseError",
    "IntegrityError",
    "MigrationError",
    "OperationalError",
    "ProgrammingError",
    "from_sqlite",
)


class DatabaseError(MicroCoreError):
    """Base class of every error the ``db`` tool raises.

    ``reason`` is the database's own message; ``statement`` the first line of the SQL.
    """

    code = "database_error"

    def __init__(self, reason: str, *, statement: str | None = None) -> None:
        self.reason = reason
        self.statement = statement
        super().__init__(f"{reason} (in: {statement})" if statement else reason)

    @property
    def public_message(self) -> str:
        """The database's reason only: an HTTP client never sees the SQL statement."""
        return self.reason


class IntegrityError(DatabaseError):
    """A constraint failed (UNIQUE, NOT NULL, FOREIGN KEY, CHECK): the data conflicts."""

    code = "conflict"
    http_status = 409


class OperationalError(DatabaseError):
    """The database could not do the work: busy or locked too long, disk full, file unreadable."""


class ProgrammingError(DatabaseError):
    """The statement is wrong: syntax, unknown table or column, wrong number of parameters."""


class MigrationError(DatabaseError):
    """A migration file failed, is misnamed, or changed after it was applied."""


# Primary result codes (the low byte of an extended code) that are the caller's mistake.
_PROGRAMMING_CODES = frozenset(
    {sqlite3.SQLITE_ERROR, sqlite3.SQLITE_RANGE, sqlite3.SQLITE_MISMATCH}
)


def from_sqlite(exc: BaseException, sql: str | None) -> DatabaseError:
    """Translate a ``sqlite3`` (or aiosqlite) exception about ``sql`` into our hierarchy."""
    statement = first_line(sql) if sql else None
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(reason, statement=statement)
    if isinstance(
        exc,
        sqlite3.ProgrammingError | sqlite3.InterfaceError | sqlite3.DataError | sqlite3.Warning,
    ):
        return ProgrammingError(reason, statement=statement)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_CONSTRAINT:
            return IntegrityError(reason, statement=statement)
        if code is not None and code & 0xFF in _PROGRAMMING_CODES:
            return ProgrammingError(reason, statement=statement)
        return OperationalError(reason, statement=statement)
    if isinstance(exc, ValueError) and "closed" in reason.lower():
        # aiosqlite refuses work on a closed connection with a bare ValueError.
        return OperationalError(
            "the database connection is closed (the app is shutting down)", statement=statement
        )
    if isinstance(exc, ValueError | OverflowError | TypeError):
        # sqlite3 refuses unbindable values (a NUL in the SQL, an int over 64 bits) this way.
        return ProgrammingError(reason, statement=statement)
    return DatabaseError(reason, statement=statement)
