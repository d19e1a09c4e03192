"""The database error hierarchy: driver exceptions never leak, each backend translates them
(``sqlite/errors.py``, ``postgres/errors.py``).

Every error names the statement it is about (its first line), keeps the driver's
reason in ``reason`` and chains the driver exception (``raise ... from exc``)::

    try:
        await db.execute("INSERT INTO products (name) VALUES (?)", ("Pen",))
    except IntegrityError as exc:       # 409 "conflict" when it escapes an HTTP handler
        exc.reason                      # 'UNIQUE constraint failed: products.name'
"""

from __future__ import annotations

from microcore.tooling import MicroCoreError

__all__ = (
    "DataError",
    "DatabaseError",
    "IntegrityError",
    "MigrationError",
    "OperationalError",
    "ProgrammingError",
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


class DataError(ProgrammingError):
    """A parameter the database cannot hold: an integer past the column's range, text where
    a number or a date goes, a string too long for its column, a type it cannot store.

    The value is the caller's input, so over HTTP this answers 400 "invalid_parameter"
    (never a 500): a handler that passes a client's value on need not range-check it
    first. A ``ProgrammingError`` too, which is how such values were refused before.

    >>> await db.query_one("SELECT * FROM products WHERE id = ?", (2**63,))
    Traceback (most recent call last):
    tools.db.DataError: Python int too large to convert to SQLite INTEGER (in: SELECT ...)
    """

    code = "invalid_parameter"
    http_status = 400

    @property
    def public_message(self) -> str:
        """What went wrong, without the statement or the value (the database's reason may
        quote either)."""
        return (
            "a parameter does not fit the database: a number out of range, a value too "
            "long, or a value of the wrong type for its column"
        )


class MigrationError(DatabaseError):
    """A migration file failed, is misnamed, or changed after it was applied."""
