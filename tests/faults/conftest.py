"""Private servers for the fault tests: stopped and started at will, never the shared ones.

Each fixture skips when its server cannot run here, saying why; under ``CI=true`` it
fails instead, so CI never passes without running every fault test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PrivatePostgres, PrivateRedis, postgres_unavailable


def _cannot_run(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true runs every fault test")
    pytest.skip(reason)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started :class:`PrivatePostgres` (its own cluster and port), removed afterwards."""
    reason = postgres_unavailable()
    if reason is not None:
        _cannot_run(f"cannot run a private PostgreSQL: {reason}")
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started :class:`PrivateRedis` (its own port; its data kept across restarts in an
    append-only file), stopped afterwards."""
    if shutil.which("redis-server") is None:
        _cannot_run("redis-server is not installed (needed for a private Redis)")
    server = PrivateRedis(store=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
