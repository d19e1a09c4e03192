"""The ``db`` tool: SQL with ``?`` placeholders, rows as dicts, transactions, per-domain migrations.

Settings: ``DATABASE_URL`` (default ``sqlite:///data/app.db``, relative to the project;
``postgresql://user:password@host/dbname`` for PostgreSQL), ``DATABASE_BUSY_TIMEOUT``
(seconds, ``5``). SQLite: ``DATABASE_SYNCHRONOUS`` (``NORMAL``), ``DATABASE_READERS``
(read connections, ``4``). PostgreSQL: ``DATABASE_POOL_MIN`` (``1``),
``DATABASE_POOL_MAX`` (``10``), ``DATABASE_ISOLATION`` (``repeatable read``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import structlog

from microcore import Tool
from microcore.tooling import TRACING, ConfigurationError, FilesApplied, KernelView, Owner
from tools.config import Config

from ._backend import DatabaseBackend
from ._db import Db
from ._errors import DatabaseError, MigrationError
from ._migrations import apply_migrations, apply_new
from ._tracing import TracedBackend
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
        if TRACING.enabled:
            self._backend = cast(DatabaseBackend, TracedBackend(backend))
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
                f"{error}; fix the migration file (hot reload applies it when saved; otherwise at "
                "the next start)",
                statement=error.statement,
            ) from error
        return self

    async def probe(self) -> str | None:
        """Readiness: the database answers ``SELECT 1`` now."""
        if self._backend is None:
            return "the database is not open"
        try:
            await self.query_one("SELECT 1")
        except DatabaseError as exc:
            return f"{self._backend.description}: {exc.public_message}"
        return None

    async def files_changed(self, paths: Sequence[Path]) -> FilesApplied:
        """Hot reload: apply new migration files in the running process, then have their
        domain's plugins reload. A failing file leaves the schema and the serving plugins as
        they were; a change to an applied file is refused (put it in a new migration)."""
        changed = [p for p in paths if _migration_domain(self._root, p) is not None]
        backend = self._backend
        if not changed or backend is None:
            return FilesApplied()
        domains = {d for p in changed if (d := _migration_domain(self._root, p)) is not None}
        applied, errors = await apply_new(backend, self._root, domains)
        failed: dict[Path, str] = {}
        for path in changed:
            domain = _migration_domain(self._root, path)
            if domain in errors:
                failed[path] = str(errors[domain])
        reload = sorted(d for d in domains if d not in errors)
        for domain in reload:
            self._migration_errors.pop(domain, None)  # fixed: its plugins may use the db again
        for domain, files in sorted(applied.items()):
            _log.info("db_migrations_applied", domain=domain, files=files)
        done = tuple(p for p in changed if p not in failed)
        return FilesApplied(applied=done, failed=failed, reload_domains=tuple(reload))

    @property
    def migration_errors(self) -> dict[str, MigrationError]:
        """Domains whose migrations failed at boot, with the error (their plugins fail)."""
        return dict(self._migration_errors)


def _migration_domain(root: Path, path: Path) -> str | None:
    """The domain of ``domains/<domain>/migrations/<file>.sql``, else None."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return None
    if len(parts) == 4 and parts[0] == "domains" and parts[2] == "migrations":
        return parts[1] if parts[3].endswith(".sql") else None
    return None
