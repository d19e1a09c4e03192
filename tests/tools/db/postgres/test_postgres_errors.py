"""asyncpg exceptions translated by SQLSTATE and kind, for the failures a test server
cannot be made to produce on demand (serialization failures, lost sockets, stale caches)."""

from __future__ import annotations

import asyncpg
import pytest

from tools.db import DatabaseError, DataError, IntegrityError, OperationalError, ProgrammingError
from tools.db.postgres.errors import from_postgres

pg = asyncpg.exceptions


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pg.DataError("invalid input for query argument $1: 2147483648"), DataError),
        (pg.NumericValueOutOfRangeError("integer out of range"), DataError),
        (pg.InvalidTextRepresentationError("invalid input syntax"), DataError),
        (pg.DivisionByZeroError("division by zero"), ProgrammingError),
        (pg.UniqueViolationError("duplicate key"), IntegrityError),
        (pg.RaiseError("refused by trigger"), IntegrityError),
        (pg.UndefinedTableError('relation "x" does not exist'), ProgrammingError),
        (pg.InFailedSQLTransactionError("current transaction is aborted"), ProgrammingError),
        (pg.SerializationError("could not serialize access"), OperationalError),
        (pg.LockNotAvailableError("canceling statement due to lock timeout"), OperationalError),
        (pg.ConnectionDoesNotExistError("connection was closed"), OperationalError),
        (pg.PostgresError("no sqlstate"), DatabaseError),
        (pg.OutdatedSchemaCacheError("cached statement plan is invalid"), OperationalError),
        (asyncpg.InterfaceError("the server expects 2 arguments, 1 was passed"), ProgrammingError),
        (asyncpg.InterfaceError("connection is closed"), OperationalError),
        (
            asyncpg.InterfaceError("cannot call fetch(): connection released"),
            OperationalError,
        ),
        (pg.InternalClientError("protocol broke"), OperationalError),
        (ConnectionResetError("Connection reset by peer"), OperationalError),
        (TimeoutError(), OperationalError),
        (RuntimeError("something else"), DatabaseError),
    ],
)
def test_postgres_errors_translate_by_sqlstate_and_kind(
    exc: BaseException, expected: type[DatabaseError]
) -> None:
    """Each asyncpg exception becomes exactly the class its SQLSTATE or kind says."""
    error = from_postgres(exc, "-- why\nSELECT ?\nFROM t")
    assert type(error) is expected
    assert error.statement == "SELECT ?"


def test_postgres_retryable_errors_say_to_run_the_transaction_again() -> None:
    """Serialization failures and stale plans tell the caller to retry."""
    serialization = from_postgres(pg.SerializationError("could not serialize access"), None)
    assert "run the transaction again" in serialization.reason
    stale = from_postgres(pg.OutdatedSchemaCacheError("cached plan is invalid"), None)
    assert stale.reason.endswith("run the transaction again")


def test_postgres_lost_connection_says_the_statement_may_not_have_run() -> None:
    """A dropped socket is named as such, with the driver's reason or its type."""
    error = from_postgres(TimeoutError(), "SELECT 1")
    assert error.reason == (
        "lost the connection to PostgreSQL (TimeoutError); the statement may not have run"
    )
