"""Migrations under hot reload: a new file applies in the running process, its domain's
plugins reload after it; a failing or changed file leaves schema and plugins as they were."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from microcore._dev.reload import Reloader
from microcore.testing import Kernel
from tests.tools.db.conftest import Boot, Dialect

TOOLS = ["config", "logger", "db", "state"]

PLUGIN = """
from microcore import Plugin

class ThingsPlugin(Plugin):
    def __init__(self, db):
        self.db = db
"""

FIRST = "CREATE TABLE things (id INTEGER PRIMARY KEY);"


@pytest.fixture(params=["file", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A database that outlives one boot: a SQLite file, and PostgreSQL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return "sqlite:///data/app.db"


def _project(make_project: Callable[..., Path]) -> Path:
    return make_project(
        {
            "domains/shop/migrations/001_things.sql": FIRST,
            "domains/shop/plugins/things_plugin.py": PLUGIN,
        },
        tools=TOOLS,
    )


async def _columns(db: Any, dialect: Dialect, table: str) -> list[str]:
    return [c["name"] for c in await db.query(dialect.columns_sql, (table,))]


async def test_new_migration_applies_in_process_and_reloads_its_domain(
    make_project: Callable[..., Path], boot: Boot, dialect: Dialect
) -> None:
    """A migration saved while the app runs is applied in one transaction, recorded in the
    ledger like a boot migration, and the domain's plugins reload after it."""
    root = _project(make_project)
    kernel: Kernel = (await boot(root)).kernel
    db: Any = kernel.tool("db")
    before = kernel.plugins["shop.ThingsPlugin"]
    path = root / "domains/shop/migrations/002_name.sql"
    path.write_text("ALTER TABLE things ADD name TEXT;")
    report = await Reloader(kernel).apply([path])
    assert report.applied == ["domains/shop/migrations/002_name.sql"]
    assert report.loaded == ["shop.ThingsPlugin"] and report.restart_needed == []
    assert kernel.plugins["shop.ThingsPlugin"] is not before
    assert await _columns(db, dialect, "things") == ["id", "name"]
    ledger = await db.query("SELECT name FROM _microcore_migrations ORDER BY name")
    assert [r["name"] for r in ledger] == ["001_things.sql", "002_name.sql"]
    assert kernel.status().reload_errors == {}


async def test_failing_migration_leaves_schema_and_plugins_then_applies_when_fixed(
    make_project: Callable[..., Path], boot: Boot, dialect: Dialect
) -> None:
    """A migration that fails rolls back whole: the schema and the serving plugins stay as
    they were and the error shows in /system/status; the fixed file then applies."""
    root = _project(make_project)
    kernel: Kernel = (await boot(root)).kernel
    db: Any = kernel.tool("db")
    before = kernel.plugins["shop.ThingsPlugin"]
    path = root / "domains/shop/migrations/002_more.sql"
    path.write_text("CREATE TABLE more_things (id INTEGER);\nALTER TABLE nowhere ADD x TEXT;")
    report = await Reloader(kernel).apply([path])
    assert report.loaded == [] and kernel.plugins["shop.ThingsPlugin"] is before
    assert "more_things" not in [r["name"] for r in await db.query(dialect.tables_sql)]
    error = kernel.status().reload_errors["domains/shop/migrations/002_more.sql"]
    assert "migration domains/shop/migrations/002_more.sql failed" in error.message

    path.write_text("CREATE TABLE more_things (id INTEGER);")
    report = await Reloader(kernel).apply([path])
    assert report.loaded == ["shop.ThingsPlugin"]
    assert "more_things" in [r["name"] for r in await db.query(dialect.tables_sql)]
    assert kernel.status().reload_errors == {}


async def test_changed_applied_migration_is_refused(
    make_project: Callable[..., Path], boot: Boot, dialect: Dialect
) -> None:
    """Editing a migration that already ran is refused with how to fix it; nothing re-runs."""
    root = _project(make_project)
    kernel: Kernel = (await boot(root)).kernel
    db: Any = kernel.tool("db")
    before = kernel.plugins["shop.ThingsPlugin"]
    path = root / "domains/shop/migrations/001_things.sql"
    path.write_text("CREATE TABLE things (id INTEGER PRIMARY KEY, extra TEXT);")
    report = await Reloader(kernel).apply([path])
    assert report.loaded == [] and kernel.plugins["shop.ThingsPlugin"] is before
    assert await _columns(db, dialect, "things") == ["id"]
    error = kernel.status().reload_errors["domains/shop/migrations/001_things.sql"]
    assert "was changed after it was applied" in error.message
    assert "put the change in a new migration with the next number" in error.message


async def test_domain_whose_boot_migration_failed_recovers_by_hot_reload(
    make_project: Callable[..., Path], boot: Boot
) -> None:
    """A domain whose migration failed at boot has failed plugins; fixing the file applies it
    in-process and the plugins boot."""
    root = make_project(
        {
            "domains/shop/migrations/001_things.sql": "CREATE TABLE (broken;",
            "domains/shop/plugins/things_plugin.py": PLUGIN,
        },
        tools=TOOLS,
    )
    kernel: Kernel = (await boot(root)).kernel
    assert kernel.plugins["shop.ThingsPlugin"].status == "failed"
    path = root / "domains/shop/migrations/001_things.sql"
    path.write_text(FIRST)
    report = await Reloader(kernel).apply([path])
    assert report.loaded == ["shop.ThingsPlugin"]
    assert kernel.plugins["shop.ThingsPlugin"].status == "ok"


async def test_files_a_tool_does_not_own_are_ignored(
    make_project: Callable[..., Path], boot: Boot
) -> None:
    """A non-SQL file in a domain, or a migration of a project without a db, changes nothing."""
    root = _project(make_project)
    kernel: Kernel = (await boot(root)).kernel
    notes = root / "domains/shop/migrations/README.md"
    notes.write_text("one change per file")
    report = await Reloader(kernel).apply([notes])
    assert (report.applied, report.loaded, report.failed) == ([], [], {})


async def test_a_draft_migration_waits_until_it_has_sql(
    make_project: Callable[..., Path], boot: Boot, dialect: Dialect
) -> None:
    """A comments-only file (what ``add plugin`` writes for a new domain) is neither applied
    nor recorded, at boot or on save, and holds back the files after it; written out, it
    applies, then the next one: so a table written under the dev server can be edited."""
    root = _project(make_project)
    draft = root / "domains/shop/migrations/002_stock.sql"
    draft.write_text("-- the stock table, once we know it\n/* CREATE TABLE stock (id INT); */\n;")
    later = root / "domains/shop/migrations/003_stock_name.sql"
    later.write_text("ALTER TABLE stock ADD name TEXT;")
    kernel: Kernel = (await boot(root)).kernel
    db: Any = kernel.tool("db")
    ledger = "SELECT name FROM _microcore_migrations ORDER BY name"
    assert [r["name"] for r in await db.query(ledger)] == ["001_things.sql"]
    assert kernel.status().plugins["shop.ThingsPlugin"].status == "ok"
    draft.write_text("-- the stock table: id and name, soon\n")  # saved, still a draft
    await Reloader(kernel).apply([draft])
    assert [r["name"] for r in await db.query(ledger)] == ["001_things.sql"]
    assert kernel.status().reload_errors == {}
    draft.write_text("-- the stock table\nCREATE TABLE stock (id INTEGER PRIMARY KEY);\n")
    report = await Reloader(kernel).apply([draft])
    assert report.applied == ["domains/shop/migrations/002_stock.sql"]
    assert await _columns(db, dialect, "stock") == ["id", "name"]  # and 003 after it
    assert [r["name"] for r in await db.query(ledger)] == [
        "001_things.sql",
        "002_stock.sql",
        "003_stock_name.sql",
    ]
    assert kernel.status().reload_errors == {}
