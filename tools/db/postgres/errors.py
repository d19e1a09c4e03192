"""asyncpg exceptions translated into the ``db`` error hierarchy, by SQLSTATE class.

=====================  ==========================================================
``IntegrityError``     23 (unique, not null, foreign key, check, exclusion) and
                       P0001 (``RAISE EXCEPTION`` in a trigger, as SQLite's RAISE)
``DataError``          a parameter that does not fit its column (see ``_DATA``):
                       22000 (an argument asyncpg cannot encode: out of int32
                       range, a str for an integer), 22P02 (invalid text for the
                       type), 22003 (out of range), 22001 (too long), ...
``ProgrammingError``   42 (syntax, unknown table or column), the rest of 22 (division
                       by zero, ...), 0A, 21, 25P02 (a statement failed earlier in
                       this transaction), 3D, 3F, 54
``OperationalError``   08 and lost connections, 40 (serialization failure, deadlock:
                       retry the transaction), 53, 55 (lock timeout), 57 (the server
                       ended the session), 58, XX, and a prepared statement made stale
                       by a schema change inside a transaction
``DatabaseError``      anything else
=====================  ==========================================================
"""

from __future__ import annotations

import asyncpg

from .._errors import (
    DatabaseError,
    DataError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from .._sql import first_line

__all__ = ("DRIVER_ERRORS", "from_postgres")

# What a call into asyncpg may raise besides PostgreSQL's own errors.
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)

_INTEGRITY = frozenset({"23"})
# Class 22 states about a value that does not fit its type or column; the rest of class 22
# (division by zero, an invalid regular expression, ...) stay ProgrammingError.
_DATA = frozenset(
    {
        "22000",  # asyncpg: an argument it cannot encode (out of int32 range, wrong type)
        "22001",  # string_data_right_truncation: too long for varchar(n)
        "22003",  # numeric_value_out_of_range
        "22007",  # invalid_datetime_format
        "22008",  # datetime_field_overflow
        "22009",  # invalid_time_zone_displacement_value
        "22015",  # interval_field_overflow
        "22018",  # invalid_character_value_for_cast
        "22021",  # character_not_in_repertoire (a NUL in text)
        "22026",  # string_data_length_mismatch
        "22P02",  # invalid_text_representation: 'abc' for an integer
        "22P03",  # invalid_binary_representation
        "22P05",  # untranslatable_character
        "22032",  # invalid_json_text
    }
)
_PROGRAMMING = frozenset({"42", "22", "0A", "21", "3D", "3F", "54", "2B", "26", "34"})
_OPERATIONAL = frozenset({"08", "40", "53", "55", "57", "58", "XX", "HV"})

_HINTS = {
    "40": "a concurrent transaction changed the same data; run the transaction again",
    "25P02": (
        "a statement failed earlier in this transaction, so PostgreSQL refuses the rest; "
        "put a statement you expect to fail in its own 'async with tx.transaction():' "
        "(a savepoint) to carry on after its error"
    ),
    "55P03": (
        "database is busy: a lock was held longer than DATABASE_BUSY_TIMEOUT; keep "
        "transactions short or raise DATABASE_BUSY_TIMEOUT"
    ),
}


def from_postgres(exc: BaseException, sql: str | None) -> DatabaseError:
    """Translate an asyncpg (or socket) exception about ``sql`` into our hierarchy."""
    statement = first_line(sql) if sql else None
    reason = str(exc).strip() or type(exc).__name__
    if isinstance(exc, asyncpg.PostgresError):
        # The primary message and the server's hint; never DETAIL, which quotes row values.
        reason = str(getattr(exc, "message", "") or "").strip() or reason.split("\n", 1)[0]
        state = str(getattr(exc, "sqlstate", "") or "")
        server_hint = str(getattr(exc, "hint", "") or "").strip()
        hint = _HINTS.get(state) or _HINTS.get(state[:2]) or server_hint.rstrip(".")
        if hint:
            reason = f"{reason}; {hint[0].lower()}{hint[1:]}"
        if state in _DATA:
            return DataError(reason, statement=statement)
        if state[:2] in _INTEGRITY or state == "P0001":
            return IntegrityError(reason, statement=statement)
        if state[:2] in _PROGRAMMING or state == "25P02":
            return ProgrammingError(reason, statement=statement)
        if state[:2] in _OPERATIONAL or isinstance(exc, asyncpg.PostgresConnectionError):
            return OperationalError(reason, statement=statement)
        return DatabaseError(reason, statement=statement)
    if isinstance(exc, asyncpg.exceptions.OutdatedSchemaCacheError):
        return OperationalError(
            f"{reason}; a table changed under a statement prepared in this transaction: "
            "run the transaction again",
            statement=statement,
        )
    if isinstance(exc, asyncpg.InterfaceError) and not _is_closed(reason):
        # A value asyncpg cannot encode for its column, a wrong argument count.
        return ProgrammingError(reason, statement=statement)
    if isinstance(
        exc,
        asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError | OSError | TimeoutError,
    ):  # the socket closed, or the protocol broke as it did (a server that ended the session)
        return OperationalError(
            f"lost the connection to PostgreSQL ({reason}); the statement may not have run",
            statement=statement,
        )
    return DatabaseError(reason, statement=statement)


def _is_closed(reason: str) -> bool:
    lowered = reason.lower()
    return "closed" in lowered or "closing" in lowered or "released" in lowered
