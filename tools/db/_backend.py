"""The backend seam: what the ``db`` tool needs from a database, whatever ``DATABASE_URL`` says.

A backend owns its connections. Plain reads and autocommit writes go through the
backend (it picks a connection); transactions and migrations lease a
:class:`Session`: one connection, held exclusively until the lease ends.

Backends: ``sqlite/`` (aiosqlite) and ``postgres/`` (asyncpg); ``db_tool`` picks one from
the URL scheme. Each translates its driver's exceptions into the ``_errors`` hierarchy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeAlias

from microcore.tooling import ConfigurationError
from tools.config import Config

from ._errors import ProgrammingError
from ._sql import first_line

__all__ = ("DatabaseBackend", "Params", "Row", "Session", "busy_timeout", "check_params")

Row: TypeAlias = dict[str, Any]
"""One result row: column name -> value (``int``, ``float``, ``str``, ``bytes`` or ``None``;
PostgreSQL also answers its own types: ``datetime``, ``Decimal``, ``UUID``, lists, ...)."""

Params: TypeAlias = Sequence[Any] | Mapping[str, Any]
"""A statement's parameters: a tuple or a list with one value per ``?`` (``(value,)`` for
one); a dict of ``:name`` values works on SQLite only."""


class Session(Protocol):
    """One connection held exclusively (a transaction, a migration)."""

    # Why the database ended the open transaction on its own after an error (SQLite does
    # for some), or None: its later statements are refused and it cannot commit.
    aborted: str | None

    async def query(self, sql: str, params: Params, *, one: bool) -> list[Row]: ...

    async def execute(self, sql: str, params: Params) -> int: ...

    async def execute_many(self, sql: str, rows: list[Params]) -> int: ...

    async def run_script(self, script: str) -> None:
        """Run every statement of a migration script, inside the current transaction."""

    async def begin(self) -> None: ...

    async def begin_exclusive(self) -> None:
        """Begin a transaction that excludes every other exclusive one, in any process,
        and whose reads see what the previous one committed (migrations)."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def savepoint(self, name: str) -> None: ...

    async def release_savepoint(self, name: str) -> None: ...

    async def rollback_to_savepoint(self, name: str) -> None: ...


class DatabaseBackend(Protocol):
    """A connected database: reads, autocommit writes, and exclusive sessions."""

    description: str  # for logs and errors: the URL without its password
    dialect: str  # "sqlite" or "postgresql": picks NNN_name.<dialect>.sql migrations

    def details(self) -> dict[str, object]:
        """What the boot log says about the connections (journal mode, pool bounds)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def query(self, sql: str, params: Params, *, one: bool) -> list[Row]: ...

    async def execute(self, sql: str, params: Params) -> int: ...

    async def execute_many(self, sql: str, rows: list[Params]) -> int:
        """All rows or none: the batch runs in its own transaction."""

    def session(self) -> AbstractAsyncContextManager[Session]: ...


def check_params(params: object, sql: str) -> Params:
    """Refuse parameters that would bind surprisingly (a bare string binds one char per ``?``)."""
    if type(params) is tuple or type(params) is list:  # the common case, checked cheaply
        return params
    if params is None:
        return ()
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Sequence | Mapping):
        raise ProgrammingError(
            f"parameters must be a tuple or a list, got {type(params).__name__}; "
            "for one value write (value,)",
            statement=first_line(sql),
        )
    return params


def busy_timeout(config: Config) -> float:
    """``DATABASE_BUSY_TIMEOUT``: how long any wait for the database may last, in seconds."""
    busy = config.get_float("DATABASE_BUSY_TIMEOUT", 5.0)
    if busy < 0:
        raise ConfigurationError(f"DATABASE_BUSY_TIMEOUT must be >= 0 seconds, got {busy}")
    return busy
