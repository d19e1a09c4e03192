"""The ``db`` tool: SQL with ``?`` placeholders, rows as dicts, transactions, per-domain migrations.

Settings: ``DATABASE_URL`` (default ``sqlite:///data/app.db``, relative to the project;
``postgresql://user:password@host/dbname`` for PostgreSQL), ``DATABASE_BUSY_TIMEOUT``
(seconds, ``5``). SQLite: ``DATABASE_SYNCHRONOUS`` (``NORMAL``), ``DATABASE_READERS``
(read connections, ``4``). PostgreSQL: ``DATABASE_POOL_MIN`` (``1``),
``DATABASE_POOL_MAX`` (``10``), ``DATABASE_ISOLATION`` (``repeatable read``).
"""

from __future__ import annotations

import structlog

from microcore import Tool
from microcore.tooling import ConfigurationError, KernelView, Owner
from tools.config import Config

from ._backend import DatabaseBackend
from ._db import Db
from ._errors import MigrationError
from ._migrations import apply_migrations
from ._url import DatabaseURL, parse_url

__all__ = ("DbTool", "create_backend")

_log = structlog.get_logger("microcore.db", tool="db")


def create_backend(url: DatabaseURL, config: Config) -> DatabaseBackend:
    """The backend ``url`` names, tuned by the settings (not connected yet).

    PostgreSQL needs asyncpg, imported only here: a SQLite project runs without it.
    """
    if url.scheme == "sqlite":
        from .sqlite.backend import SqliteBackend, SqliteOptions

        return SqliteBackend(url, SqliteOptions.from_config(config))
    try:
        from .postgres.backend import PostgresBackend, PostgresOptions
    except ImportError as exc:
        raise ConfigurationError(
            f"DATABASE_URL uses PostgreSQL, which needs asyncpg ({exc}); install it: "
            "pip install 'microcore[postgres]'"
        ) from exc
    return PostgresBackend(url, PostgresOptions.from_config(config))


class DbTool(Tool, Db):
    """SQLite (WAL, concurrent readers, one serialized writer) or PostgreSQL (a pool), with
    ``?`` placeholders on both.

    >>> product_id = await self.db.execute(
    ...     "INSERT INTO products (name, price) VALUES (?, ?)", ("Pen", 2.5))
    >>> await self.db.query_one("SELECT * FROM products WHERE id = ?", (product_id,))
    {'id': 1, 'name': 'Pen', 'price': 2.5}

    Schema lives in ``domains/<domain>/migrations/NNN_<name>.sql``, applied at boot;
    ``NNN_<name>.postgresql.sql`` replaces it on PostgreSQL where the SQL differs.
    Errors: ``IntegrityError`` (409 "conflict" over HTTP), ``DataError`` (400
    "invalid_parameter"), ``OperationalError``, ``ProgrammingError``, ``MigrationError``,
    all ``DatabaseError``.
    """

    name = "db"

    def __init__(self, config: Config, kernel: KernelView) -> None:
        Db.__init__(self)
        self._config = config
        self._root = kernel.root
        self._migration_errors: dict[str, MigrationError] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def setup(self) -> None:
        url = parse_url(self._config.get("DATABASE_URL"), root=self._root)
        backend = create_backend(url, self._config)
        await backend.open()
        self._backend = backend
        try:
            self._migration_errors = await apply_migrations(backend, self._root)
        except BaseException:
            self._backend = None
            await backend.close()
            raise
        _log.info(
            "db_ready",
            database=backend.description,
            **backend.details(),
            failed_domains=sorted(self._migration_errors) or None,
        )

    async def shutdown(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    # -- ownership ---------------------------------------------------------------------

    def bind(self, owner: Owner) -> Db:
        """Every plugin shares the tool, except in a domain whose migrations failed."""
        domain = owner.identity.split(".", 1)[0]
        error = self._migration_errors.get(domain)
        if error is not None:
            raise MigrationError(
                f"domain {domain!r} cannot use the database because its migrations failed: "
                f"{error}; fix the migration file and restart",
                statement=error.statement,
            ) from error
        return self

    @property
    def migration_errors(self) -> dict[str, MigrationError]:
        """Domains whose migrations failed at boot, with the error (their plugins fail)."""
        return dict(self._migration_errors)
