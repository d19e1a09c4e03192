"""Readiness of the db tool: its probe says whether the database answers now."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from microcore.testing import RunningApp


async def test_db_probe_is_ready_while_the_database_answers(booted: RunningApp) -> None:
    """SELECT 1 answers: the probe is None."""
    db: Any = booted.kernel.tool("db")
    assert await db.probe() is None


async def test_db_probe_names_the_database_when_it_fails(
    booted: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that does not answer makes the probe say which and why, without the SQL."""
    db: Any = booted.kernel.tool("db")
    errors = sys.modules["tools.db"]  # the booted project's copy of the tool's errors

    async def down(sql: str, params: Any = ()) -> None:
        raise errors.OperationalError("connection refused", statement=sql)

    monkeypatch.setattr(db, "query_one", down)
    problem = await db.probe()
    assert problem is not None and "SELECT" not in problem
    assert problem.startswith(db._backend.description)


async def test_db_probe_of_a_closed_tool_says_so(booted: RunningApp) -> None:
    """After shutdown the probe reports the database is not open."""
    db: Any = booted.kernel.tool("db")
    await booted.stop()
    assert await db.probe() == "the database is not open"
