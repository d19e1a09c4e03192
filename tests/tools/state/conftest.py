"""Fixtures for the state tool's parity suite: every test that asks for ``state`` runs on
the memory store and on Redis (its own key prefix per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from microcore.testing import start_app

TOOLS = ["config", "logger", "state"]


@pytest.fixture(params=["memory", "redis"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """STATE_URL (and STATE_PREFIX) for each store."""
    if request.param == "redis":
        return {
            "STATE_URL": request.getfixturevalue("redis_url"),
            "STATE_PREFIX": request.getfixturevalue("redis_prefix"),
        }
    return {"STATE_URL": "memory://"}


@pytest.fixture
async def state(
    make_project: Callable[..., Path], store_settings: dict[str, str]
) -> AsyncIterator[Any]:
    """The running state tool on each store."""
    running = await start_app(make_project({}, tools=TOOLS), settings=store_settings)
    try:
        assert running.kernel.status().tools["state"].status == "ok"
        yield running.kernel.tool("state")
    finally:
        await running.stop()
