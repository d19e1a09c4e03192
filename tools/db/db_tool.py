"""The ``db`` tool: SQL with ``?`` placeholders, rows as dicts, transactions, per-domain migrations.

Settings: ``DATABASE_URL`` (default ``sqlite:///data/app.db``, relative to the project;
``postgresql://user:password@host/dbname`` for PostgreSQL), ``DATABASE_BUSY_TIMEOUT``
(seconds, ``5``). SQLite: ``DATABASE_SYNCHRONOUS`` (``NORMAL``), ``DATABASE_READERS``
(read connections, ``4``). PostgreSQL: ``DATABASE_POOL_MIN`` (``1``),
``DATABASE_POOL_MAX`` (``10``), ``DATABASE_ISOLATION`` (``repeatable read``).
"""

from __future__ import annotations

from typing import Any

import structlog

from microcore import Tool
from microcore.tooling import ConfigurationError, KernelView, Owner
from tools.config import Config

from ._db import Db
from ._driver import Driver
from ._errors import MigrationError
from ._migrations import apply_migrations
from ._sqlite import SYNCHRONOUS_MODES, SqliteDriver, SqliteOptions
from ._url import DatabaseURL, parse_url

__all__ = ("DbTool",)

_log = structlog.get_logger("microcore.db", tool="db")


class DbTool(Tool, Db):
    """SQLite (WAL, concurrent readers, one serialized writer) or PostgreSQL (a pool), with
    ``?`` placeholders on both.

    >>> product_id = await self.db.execute(
    ...     "INSERT INTO products (name, price) VALUES (?, ?)", ("Pen", 2.5))
    >>> await self.db.query_one("SELECT * FROM products WHERE id = ?", (product_id,))
    {'id': 1, 'name': 'Pen', 'price': 2.5}

    Schema lives in ``domains/<domain>/migrations/NNN_<name>.sql``, applied at boot;
    ``NNN_<name>.postgresql.sql`` replaces it on PostgreSQL where the SQL differs.
    Errors: ``IntegrityError`` (409 "conflict" over HTTP), ``OperationalError``,
    ``ProgrammingError``, ``MigrationError``, all ``DatabaseError``.
    """

    name = "db"

    def __init__(self, config: Config, kernel: KernelView) -> None:
        Db.__init__(self)
        self._config = config
        self._root = kernel.root
        self._migration_errors: dict[str, MigrationError] = {}
        self._pool = (0, 0)  # PostgreSQL pool bounds, for the boot log

    # -- lifecycle -------------------------------------------------------------------

    async def setup(self) -> None:
        url = parse_url(self._config.get("DATABASE_URL"), root=self._root)
        driver = self._create_driver(url)
        await driver.open()
        self._driver = driver
        try:
            self._migration_errors = await apply_migrations(driver, self._root)
        except BaseException:
            self._driver = None
            await driver.close()
            raise
        details: dict[str, object] = (
            {"journal_mode": driver.journal_mode, "readers": len(driver._readers)}
            if isinstance(driver, SqliteDriver)
            else {"pool_min": self._pool[0], "pool_max": self._pool[1]}
        )
        _log.info(
            "db_ready",
            database=driver.description,
            **details,
            failed_domains=sorted(self._migration_errors) or None,
        )

    def _create_driver(self, url: DatabaseURL) -> Driver:
        if url.scheme == "sqlite":
            return SqliteDriver(url, self._options())
        try:
            from . import _postgres  # asyncpg is optional: imported only when used
        except ImportError as exc:
            raise ConfigurationError(
                f"DATABASE_URL uses PostgreSQL, which needs asyncpg ({exc}); install it: "
                "pip install 'microcore[postgres]'"
            ) from exc
        options = self._postgres_options(_postgres)
        self._pool = (options.pool_min, options.pool_max)
        return _postgres.PostgresDriver(url, options)

    async def shutdown(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    def _options(self) -> SqliteOptions:
        synchronous = (self._config.get("DATABASE_SYNCHRONOUS") or "NORMAL").strip().upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"DATABASE_SYNCHRONOUS must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                f"got {synchronous!r}"
            )
        busy = self._busy_timeout()
        readers = self._config.get_int("DATABASE_READERS", 4)
        if not 0 <= readers <= 64:
            raise ConfigurationError(f"DATABASE_READERS must be between 0 and 64, got {readers}")
        return SqliteOptions(synchronous=synchronous, busy_timeout=busy, readers=readers)

    def _busy_timeout(self) -> float:
        busy = self._config.get_float("DATABASE_BUSY_TIMEOUT", 5.0)
        if busy < 0:
            raise ConfigurationError(f"DATABASE_BUSY_TIMEOUT must be >= 0 seconds, got {busy}")
        return busy

    def _postgres_options(self, module: Any) -> Any:
        pool_min = self._config.get_int("DATABASE_POOL_MIN", 1)
        pool_max = self._config.get_int("DATABASE_POOL_MAX", 10)
        if not 1 <= pool_max <= 1000:
            raise ConfigurationError(
                f"DATABASE_POOL_MAX must be between 1 and 1000, got {pool_max}"
            )
        if not 0 <= pool_min <= pool_max:
            raise ConfigurationError(
                f"DATABASE_POOL_MIN must be between 0 and DATABASE_POOL_MAX ({pool_max}), "
                f"got {pool_min}"
            )
        raw = self._config.get("DATABASE_ISOLATION") or "repeatable read"
        isolation = " ".join(raw.replace("_", " ").replace("-", " ").lower().split())
        if isolation not in module.ISOLATION_LEVELS:
            raise ConfigurationError(
                f"DATABASE_ISOLATION must be one of {', '.join(module.ISOLATION_LEVELS)}, "
                f"got {raw!r}"
            )
        return module.PostgresOptions(
            pool_min=pool_min,
            pool_max=pool_max,
            busy_timeout=self._busy_timeout(),
            isolation=isolation,
        )

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
