"""Connection settings: WAL, foreign keys, synchronous, busy timeout, readers; bad values fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from microcore.testing import start_app
from tests.support import present

TOOLS = ["config", "logger", "db"]
FILE_DB = {"DATABASE_URL": "sqlite:///data/app.db"}


async def _pragmas(db: Any) -> dict[str, Any]:
    names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    return {n: next(iter((await db.query_one(f"PRAGMA {n}")).values())) for n in names}


async def test_file_database_defaults(make_project: Callable[..., Path]) -> None:
    """A file database runs in WAL with foreign keys, synchronous=NORMAL and a 5 s busy timeout."""
    root = make_project({}, tools=TOOLS)
    running = await start_app(root, settings=FILE_DB)
    try:
        db: Any = running.kernel.tool("db")
        assert await _pragmas(db) == {
            "journal_mode": "wal",
            "synchronous": 1,
            "foreign_keys": 1,
            "busy_timeout": 5000,
        }
        assert (root / "data" / "app.db").is_file()
    finally:
        await running.stop()


async def test_settings_tune_the_connections(make_project: Callable[..., Path]) -> None:
    """DATABASE_SYNCHRONOUS and DATABASE_BUSY_TIMEOUT reach every connection."""
    settings = {**FILE_DB, "DATABASE_SYNCHRONOUS": "full", "DATABASE_BUSY_TIMEOUT": "1.5"}
    running = await start_app(make_project({}, tools=TOOLS), settings=settings)
    try:
        pragmas = await _pragmas(running.kernel.tool("db"))
        assert (pragmas["synchronous"], pragmas["busy_timeout"]) == (2, 1500)
    finally:
        await running.stop()


async def test_absolute_url_creates_missing_folders(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    """sqlite:////abs/path creates the folders it needs."""
    target = tmp_path / "elsewhere" / "deep" / "app.db"
    settings = {"DATABASE_URL": f"sqlite:///{target}"}
    running = await start_app(make_project({}, tools=TOOLS), settings=settings)
    try:
        await running.kernel.tool("db").execute("CREATE TABLE t (x)")  # type: ignore[attr-defined]
        assert target.is_file()
    finally:
        await running.stop()


async def test_zero_readers_serves_reads_from_the_writer(make_project: Callable[..., Path]) -> None:
    """DATABASE_READERS=0 still answers reads (on the single connection)."""
    settings = {**FILE_DB, "DATABASE_READERS": "0"}
    running = await start_app(make_project({}, tools=TOOLS), settings=settings)
    try:
        db: Any = running.kernel.tool("db")
        await db.execute("CREATE TABLE t (x)")
        await db.execute("INSERT INTO t VALUES (1)")
        assert await db.query("SELECT x FROM t") == [{"x": 1}]
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"DATABASE_SYNCHRONOUS": "SOMETIMES"}, "DATABASE_SYNCHRONOUS must be one of OFF, NORMAL"),
        ({"DATABASE_BUSY_TIMEOUT": "-1"}, "DATABASE_BUSY_TIMEOUT must be >= 0"),
        ({"DATABASE_BUSY_TIMEOUT": "soon"}, "DATABASE_BUSY_TIMEOUT must be a number"),
        ({"DATABASE_READERS": "100"}, "DATABASE_READERS must be between 0 and 64"),
        ({"DATABASE_URL": "mysql://x/y"}, "scheme 'mysql' is not supported"),
    ],
)
async def test_bad_settings_fail_the_db_tool_and_its_plugins(
    make_project: Callable[..., Path], settings: dict[str, str], message: str
) -> None:
    """A bad setting fails the db tool with the fix in the message; plugins needing db fail."""
    plugin = """
    from microcore import Plugin
    class UsesDb(Plugin):
        def __init__(self, db):
            self.db = db
    """
    root = make_project({"domains/a/plugins/uses_plugin.py": plugin}, tools=TOOLS)
    running = await start_app(root, settings=settings)
    try:
        status = running.kernel.status()
        assert status.tools["db"].status == "failed"
        assert message in present(status.tools["db"].error).message
        assert status.plugins["a.UsesDb"].status == "failed"
    finally:
        await running.stop()
