"""Per-domain migrations: ``domains/<domain>/migrations/NNN_<name>.sql``, applied at boot.

Each file runs in its own transaction together with its ledger row (domain, file
name, checksum), so it is applied exactly once. A file changed after it was
applied, a misnamed file or a failing statement stops that domain's migrations
and is reported for that domain only: its plugins fail, the others boot.

SQL that differs between databases goes in a variant beside the portable file:
``NNN_<name>.postgresql.sql`` (or ``.sqlite.sql``) runs *instead of* ``NNN_<name>.sql``
on that database, e.g. ``SERIAL`` where SQLite says ``INTEGER PRIMARY KEY AUTOINCREMENT``.
A variant without a portable file runs on its database only. The ledger records
``NNN_<name>.sql`` with the checksum of the file that ran.

A file with no statement yet (comments only: a draft, as ``microcore add plugin`` writes a
new domain's first migration) is not applied and not recorded; it and the domain's later
files wait until it holds SQL. So the dev server never applies a half-written table that
could then not be edited.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import anyio
import msgspec
import structlog

from ._backend import DatabaseBackend
from ._errors import DatabaseError, MigrationError

__all__ = ("LEDGER", "Migration", "apply_migrations", "apply_new", "discover")

LEDGER = "_microcore_migrations"

_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)(?:\.(sqlite|postgresql))?\.sql$")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)

_log = structlog.get_logger("microcore.db", tool="db")

_CREATE_LEDGER = f"""CREATE TABLE IF NOT EXISTS {LEDGER} (
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (domain, name)
)"""


class Migration(msgspec.Struct, frozen=True):
    """One migration file: ``name`` is the file name, ``checksum`` the sha256 of its text."""

    domain: str
    number: int
    name: str
    file: str  # relative to the project root, for messages
    script: str
    checksum: str

    @property
    def draft(self) -> bool:
        """No statement yet, only comments: not applied until it has one."""
        return not _COMMENTS.sub("", self.script).strip(" \t\r\n;")


def _checksum(script: str) -> str:
    # Line endings do not change what runs; a checkout on Windows must not look "changed".
    return hashlib.sha256(script.replace("\r\n", "\n").encode()).hexdigest()


def discover(
    root: Path, dialect: str = "sqlite"
) -> tuple[dict[str, list[Migration]], dict[str, MigrationError]]:
    """Every domain's migrations for ``dialect`` in apply order, and the domains whose
    files are misnamed or share a number."""
    found: dict[str, list[Migration]] = {}
    errors: dict[str, MigrationError] = {}
    for folder in sorted(root.glob("domains/*/migrations")):
        if not folder.is_dir():
            continue
        domain = folder.parent.name
        files: dict[tuple[int, str], dict[str | None, Path]] = {}  # (number, name) -> variants
        for path in sorted(folder.glob("*.sql")):
            match = _NAME.match(path.name)
            if match is None:
                errors[domain] = MigrationError(
                    f"migration file {path.relative_to(root)} is misnamed; name it "
                    "NNN_<name>.sql, e.g. 001_create_products.sql (applied in number order), "
                    "or NNN_<name>.postgresql.sql / .sqlite.sql for one database only"
                )
                break
            key = (int(match.group(1)), f"{match.group(1)}_{match.group(2)}.sql")
            files.setdefault(key, {})[match.group(3)] = path
        else:
            keys = sorted(files)
            clash = next((p for p in pairwise(keys) if p[0][0] == p[1][0]), None)
            if clash is not None:
                first, second = (_any_file(files[k]).relative_to(root) for k in clash)
                errors[domain] = MigrationError(
                    f"migrations {first} and {second} share the number "
                    f"{clash[0][0]}; give each file its own number"
                )
                continue
            migrations = []
            for (number, name), variants in sorted(files.items()):
                file = variants.get(dialect) or variants.get(None)
                if file is None:
                    continue  # only another database's variant
                script = file.read_text(encoding="utf-8")
                rel = str(file.relative_to(root))
                migrations.append(Migration(domain, number, name, rel, script, _checksum(script)))
            if migrations:
                found[domain] = migrations
    return found, errors


def _any_file(variants: dict[str | None, Path]) -> Path:
    """The portable file if there is one, else the first variant (for messages)."""
    return variants.get(None) or variants[min(v for v in variants if v is not None)]


async def apply_migrations(backend: DatabaseBackend, root: Path) -> dict[str, MigrationError]:
    """Apply what is new, domain by domain; the errors of the domains that failed."""
    found, errors = await anyio.to_thread.run_sync(discover, root, backend.dialect)
    for domain, misnamed in errors.items():
        _log.error("db_migration_failed", domain=domain, error=str(misnamed))
    if not found:
        return errors
    async with backend.session() as session:
        await session.begin_exclusive()  # replicas booting together create it once
        await session.execute(_CREATE_LEDGER, ())
        rows = await session.query(f"SELECT domain, name, checksum FROM {LEDGER}", (), one=False)
        await session.commit()
    applied = {(r["domain"], r["name"]): r["checksum"] for r in rows}
    for domain, migrations in found.items():
        for migration in migrations:
            recorded = applied.get((domain, migration.name))
            if recorded is None and migration.draft:
                _waits(migration)
                break
            error = await _apply(backend, migration, recorded)
            if error is not None:
                errors[domain] = error
                _log.error(
                    "db_migration_failed", domain=domain, file=migration.file, error=str(error)
                )
                break
    return errors


async def apply_new(
    backend: DatabaseBackend, root: Path, domains: set[str]
) -> tuple[dict[str, list[str]], dict[str, MigrationError]]:
    """Hot reload: apply the new migrations of ``domains`` in the running process, each in
    its own transaction with its ledger row, as at boot. Returns the files applied per domain
    and the domains that failed (a changed applied file, a misnamed one, a failing statement),
    each stopping at its first error with the schema as the last good file left it."""
    found, errors = await anyio.to_thread.run_sync(discover, root, backend.dialect)
    errors = {d: e for d, e in errors.items() if d in domains}
    applied_now: dict[str, list[str]] = {}
    wanted = {d: m for d, m in found.items() if d in domains and d not in errors}
    if not wanted:
        return applied_now, errors
    async with backend.session() as session:
        await session.begin_exclusive()
        await session.execute(_CREATE_LEDGER, ())
        rows = await session.query(f"SELECT domain, name, checksum FROM {LEDGER}", (), one=False)
        await session.commit()
    applied = {(r["domain"], r["name"]): r["checksum"] for r in rows}
    for domain, migrations in wanted.items():
        for migration in migrations:
            recorded = applied.get((domain, migration.name))
            if recorded is None and migration.draft:
                _waits(migration)
                break
            error = await _apply(backend, migration, recorded)
            if error is not None:
                errors[domain] = error
                _log.error(
                    "db_migration_failed", domain=domain, file=migration.file, error=str(error)
                )
                break
            if recorded is None:
                applied_now.setdefault(domain, []).append(migration.file)
    return applied_now, errors


async def _apply(
    backend: DatabaseBackend, migration: Migration, recorded: str | None
) -> MigrationError | None:
    if recorded is not None:
        return _check_unchanged(migration, recorded)
    async with backend.session() as session:
        await session.begin_exclusive()
        try:
            # Another process may have applied it since we looked: re-read under the lock.
            row = await session.query(
                f"SELECT checksum FROM {LEDGER} WHERE domain = ? AND name = ?",
                (migration.domain, migration.name),
                one=True,
            )
            if row:
                await session.rollback()
                return _check_unchanged(migration, row[0]["checksum"])
            await session.run_script(migration.script)
            await session.execute(
                f"INSERT INTO {LEDGER} (domain, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                (migration.domain, migration.name, migration.checksum, _now()),
            )
            await session.commit()
        except DatabaseError as exc:
            await session.rollback()
            return MigrationError(
                f"migration {migration.file} failed: {exc.reason}", statement=exc.statement
            )
    _log.info("db_migration_applied", domain=migration.domain, file=migration.file)
    return None


def _waits(migration: Migration) -> None:
    _log.info(
        "db_migration_draft",
        domain=migration.domain,
        file=migration.file,
        detail="no SQL statement yet (comments only): it and the later files wait until it has one",
    )


def _check_unchanged(migration: Migration, recorded: str) -> MigrationError | None:
    if recorded == migration.checksum:
        return None
    return MigrationError(
        f"migration {migration.file} was changed after it was applied (recorded checksum "
        f"{recorded[:12]}, file now {migration.checksum[:12]}); applied migrations never run "
        "again: restore the file and put the change in a new migration with the next number"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
