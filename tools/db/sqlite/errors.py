"""sqlite3 (and aiosqlite) exceptions translated into the ``db`` error hierarchy."""

from __future__ import annotations

import sqlite3

from .._errors import DatabaseError, IntegrityError, OperationalError, ProgrammingError
from .._sql import first_line

__all__ = ("from_sqlite",)

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
