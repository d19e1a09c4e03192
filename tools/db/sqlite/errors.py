"""sqlite3 (and aiosqlite) exceptions translated into the ``db`` error hierarchy."""

from __future__ import annotations

import sqlite3

from .._errors import (
    DatabaseError,
    DataError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from .._sql import first_line

__all__ = ("from_sqlite",)

# Primary result codes (the low byte of an extended code) that are the caller's mistake.
_PROGRAMMING_CODES = frozenset({sqlite3.SQLITE_ERROR, sqlite3.SQLITE_RANGE})

# A value of the wrong type for its column: "datatype mismatch" (an INTEGER PRIMARY KEY),
# SQLITE_CONSTRAINT_DATATYPE (a STRICT table: "cannot store TEXT value in INTEGER column").
_DATATYPE_CODES = frozenset({sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_CONSTRAINT | 12 << 8})

_BINDING = "Error binding parameter"  # sqlite3: a value of a type SQLite cannot store


def from_sqlite(exc: BaseException, sql: str | None) -> DatabaseError:
    """Translate a ``sqlite3`` (or aiosqlite) exception about ``sql`` into our hierarchy."""
    statement = first_line(sql) if sql else None
    reason = str(exc) or type(exc).__name__
    code = getattr(exc, "sqlite_errorcode", None)
    if code in _DATATYPE_CODES or isinstance(exc, sqlite3.DataError | OverflowError):
        # a value that does not fit (OverflowError: an int over 64 bits; DataError: too big)
        return DataError(reason, statement=statement)
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError) and reason.startswith(
        _BINDING
    ):
        return DataError(reason, statement=statement)
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(reason, statement=statement)
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError | sqlite3.Warning):
        return ProgrammingError(reason, statement=statement)
    if isinstance(exc, sqlite3.Error):
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
    if isinstance(exc, ValueError | TypeError):
        # sqlite3 refuses a NUL character in the SQL text this way.
        return ProgrammingError(reason, statement=statement)
    return DatabaseError(reason, statement=statement)
