"""sqlite3 exceptions translated by kind and result code, for the failures a test database
cannot be made to produce on demand (locked, read-only, a closed connection)."""

from __future__ import annotations

import sqlite3

import pytest

from tools.db import DatabaseError, DataError, IntegrityError, OperationalError, ProgrammingError
from tools.db.sqlite.errors import from_sqlite


def _error(kind: type[sqlite3.Error], message: str, code: int | None) -> sqlite3.Error:
    exc = kind(message)
    if code is not None:
        exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OverflowError("Python int too large to convert to SQLite INTEGER"), DataError),
        (sqlite3.DataError("string or blob too big"), DataError),
        (_error(sqlite3.IntegrityError, "datatype mismatch", sqlite3.SQLITE_MISMATCH), DataError),
        (sqlite3.ProgrammingError("Error binding parameter 1: type 'dict'"), DataError),
        (sqlite3.InterfaceError("Error binding parameter 2 - probably unsupported"), DataError),
        (sqlite3.ProgrammingError("Incorrect number of bindings supplied."), ProgrammingError),
        (sqlite3.Warning("You can only execute one statement at a time."), ProgrammingError),
        (_error(sqlite3.IntegrityError, "UNIQUE constraint failed", 2067), IntegrityError),
        (_error(sqlite3.OperationalError, "constraint failed", 275), IntegrityError),
        (_error(sqlite3.OperationalError, 'near "x": syntax error', 1), ProgrammingError),
        (_error(sqlite3.OperationalError, "column index out of range", 25), ProgrammingError),
        (_error(sqlite3.OperationalError, "database is locked", 5), OperationalError),
        (
            _error(sqlite3.OperationalError, "readonly database", 8),
            OperationalError,
        ),
        (sqlite3.OperationalError("no code"), OperationalError),
        (ValueError("the query contains a null character"), ProgrammingError),
        (TypeError("parameters are of unsupported type"), ProgrammingError),
        (RuntimeError("something else"), DatabaseError),
    ],
)
def test_sqlite_errors_translate_by_kind_and_code(
    exc: BaseException, expected: type[DatabaseError]
) -> None:
    """Each sqlite3 exception becomes exactly the class its kind and result code say."""
    error = from_sqlite(exc, "-- why\nSELECT ?\nFROM t")
    assert type(error) is expected
    assert error.reason == str(exc)
    assert error.statement == "SELECT ?"


def test_sqlite_closed_connection_is_operational_error() -> None:
    """aiosqlite's bare ValueError on a closed connection says the app is shutting down."""
    error = from_sqlite(ValueError("Connection closed"), None)
    assert type(error) is OperationalError
    assert error.reason == "the database connection is closed (the app is shutting down)"
    assert error.statement is None


def test_sqlite_error_without_a_message_is_named_by_its_type() -> None:
    """An exception with no text still gives a reason: its type's name."""
    assert from_sqlite(sqlite3.OperationalError(), "SELECT 1").reason == "OperationalError"
