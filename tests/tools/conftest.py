"""Backing services for the driver parity suites: PostgreSQL and Redis.

A test that needs a service skips, saying which one and where, when it does not
answer; under ``CI=true`` it fails instead, so CI never passes without running every
driver. Each test gets its own PostgreSQL schema (``search_path``) and its own Redis
key prefix, dropped afterwards: tests never see each other's data.

Where the services are: ``MICROCORE_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and ``MICROCORE_TEST_REDIS`` (default
``redis://127.0.0.1:6379/15``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_URL = os.environ.get(
    "MICROCORE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MICROCORE_TEST_REDIS", "redis://127.0.0.1:6379/15")


@cache
def _unreachable(host: str, port: int) -> str | None:
    """Why ``host:port`` does not accept a TCP connection, or ``None`` when it does."""
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip the test when the service at ``url`` is down; fail it when ``CI=true``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    reason = _unreachable(host, port)
    if reason is None:
        return
    message = f"{name} is not reachable at {host}:{port} ({reason})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true runs every driver: start it (.ci/run does)")
    pytest.skip(f"{message}; start it to run the {name} driver tests")


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query string."""
    parts = urlsplit(url)
    extra = "&".join(f"{key}={value}" for key, value in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A DATABASE_URL on a fresh, empty schema of the test database, dropped afterwards."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    import asyncpg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield with_query(POSTGRES_URL, search_path=schema)
    finally:
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await admin.close()


@pytest.fixture
def redis_url() -> str:
    """The test Redis (a STATE_URL); pair it with ``redis_prefix``."""
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A STATE_PREFIX no other test uses; its keys are deleted afterwards."""
    import redis.asyncio as redis

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
