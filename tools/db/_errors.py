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


class MigrationError(DatabaseError):
    """A migration file failed, is misnamed, or changed after it was applied."""
