"""What only the Redis store has: state shared by replicas, key prefixes, a namespace
index that never outlives its keys, and Redis's limits."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from microcore.testing import RunningApp, start_app
from tests.support import eventually

TOOLS = ["config", "logger", "state"]


@pytest.fixture
async def replicas(
    make_project: Callable[..., Path], redis_url: str, redis_prefix: str
) -> AsyncIterator[list[Any]]:
    """Two apps on one Redis and one prefix, as two replicas of a service are."""
    apps: list[RunningApp] = []
    try:
        for _ in range(2):
            settings = {"STATE_URL": redis_url, "STATE_PREFIX": redis_prefix}
            apps.append(await start_app(make_project({}, tools=TOOLS), settings=settings))
        yield [running.kernel.tool("state") for running in apps]
    finally:
        for running in apps:
            await running.stop()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Any]:
    """A plain Redis client, to look at what the store wrote."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def _names(raw: Any, prefix: str) -> list[str]:
    return sorted([key.decode() async for key in raw.scan_iter(match=f"{prefix}:*")])


async def test_redis_replicas_share_state_and_count_atomically(replicas: list[Any]) -> None:
    """What one replica writes the other reads; increments from both add up exactly."""
    first, second = replicas
    await first.set("carts", "u1", {"items": [1]}, ttl=60)
    assert await second.get("carts", "u1") == {"items": [1]}

    async def bump(state: Any) -> None:
        for _ in range(100):
            await state.incr("hits", "home")

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for state in (first, second, first, second):
                tg.start_soon(bump, state)
    assert await first.get("hits", "home") == 400
    assert await second.delete("carts", "u1") is True
    assert await first.keys("carts") == []


async def test_redis_prefixes_keep_apps_apart(
    make_project: Callable[..., Path], redis_url: str, redis_prefix: str, raw: Any
) -> None:
    """Apps with different STATE_PREFIX values never see each other's keys."""
    apps = [
        await start_app(
            make_project({}, tools=TOOLS),
            settings={"STATE_URL": redis_url, "STATE_PREFIX": f"{redis_prefix}:{name}"},
        )
        for name in ("blue", "green")
    ]
    try:
        blue, green = (running.kernel.tool("state") for running in apps)
        await blue.set("ns", "k", "blue")  # type: ignore[attr-defined]
        assert await green.get("ns", "k") is None  # type: ignore[attr-defined]
        assert await green.keys("ns") == []  # type: ignore[attr-defined]
        names = await _names(raw, redis_prefix)
        assert names and all(name.startswith(f"{redis_prefix}:blue:") for name in names)
    finally:
        for running in apps:
            await running.stop()


async def test_redis_leaves_nothing_behind_a_namespace_emptied(
    state_on_redis: Any, redis_prefix: str, raw: Any
) -> None:
    """Once its keys are deleted or expired, a namespace leaves no key in Redis."""
    await state_on_redis.set("ns", "a", 1)
    await state_on_redis.set("ns", "b", 1, ttl=0.05)
    await state_on_redis.incr("ns", "c")
    for key in ("a", "c"):
        await state_on_redis.delete("ns", key)

    async def nothing_left() -> bool:  # the index expires with its last member
        return not await _names(raw, redis_prefix)

    await eventually(nothing_left, interval=0.01)


async def test_redis_index_expires_with_its_longest_lived_key(
    state_on_redis: Any, redis_prefix: str, raw: Any
) -> None:
    """The namespace index carries the latest expiry of its keys, none when one is permanent."""
    await state_on_redis.set("ns", "short", 1, ttl=10)
    await state_on_redis.set("ns", "long", 1, ttl=100)
    index = f"{redis_prefix}:keys:2:ns"
    assert 90_000 < await raw.pttl(index) <= 100_000
    await state_on_redis.set("ns", "forever", 1)
    assert await raw.pttl(index) == -1


async def test_redis_keys_forget_values_removed_behind_the_store(
    state_on_redis: Any, redis_prefix: str, raw: Any
) -> None:
    """A value deleted or evicted by Redis itself (not through the tool) leaves keys()."""
    await state_on_redis.set("ns", "kept", 1)
    await state_on_redis.set("ns", "evicted", 1)
    await raw.delete(f"{redis_prefix}:2:ns:evicted")
    assert await state_on_redis.keys("ns") == ["kept"]


async def test_redis_counter_past_exact_range_is_refused(state_on_redis: Any) -> None:
    """Redis scripts count in doubles: a counter reaching 2**53 is refused, not rounded."""
    error = sys.modules["tools.state"].StateError
    await state_on_redis.set("c", "n", 2**53 - 1)
    with pytest.raises(error, match="would reach 2\\*\\*53"):
        await state_on_redis.incr("c", "n")
    with pytest.raises(error, match="below 2\\*\\*53"):
        await state_on_redis.incr("c", "m", by=2**60)
    assert await state_on_redis.get("c", "n") == 2**53 - 1


async def test_redis_unreachable_mid_run_is_a_state_error() -> None:
    """Every call to a Redis that stopped answering fails at once with a StateError naming
    the call and the server (the tool checks the server at boot; this is after)."""
    from tools.state import StateError
    from tools.state.redis import RedisBackend

    store = RedisBackend("redis://app:s3cret@127.0.0.1:1/0", prefix="gone")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: store.get("ns", "k"),
        "set": lambda: store.set("ns", "k", 1, ttl=5),
        "delete": lambda: store.delete("ns", "k"),
        "incr": lambda: store.incr("ns", "k"),
        "keys": lambda: store.keys("ns"),
    }
    try:
        with anyio.fail_after(10):
            for name, call in calls.items():
                with pytest.raises(StateError) as info:
                    await call()
                message = str(info.value)
                assert message.startswith(f"state {name} in 'ns' failed: Redis at redis://app:***@")
                assert "s3cret" not in message
    finally:
        await store.close()


@pytest.fixture
async def state_on_redis(
    make_project: Callable[..., Path], redis_url: str, redis_prefix: str
) -> AsyncIterator[Any]:
    """The state tool on Redis, with this test's prefix."""
    settings = {"STATE_URL": redis_url, "STATE_PREFIX": redis_prefix}
    running = await start_app(make_project({}, tools=TOOLS), settings=settings)
    try:
        yield running.kernel.tool("state")
    finally:
        await running.stop()


async def test_redis_replicas_racing_for_a_claim_get_one_winner(replicas: list[Any]) -> None:
    """Two replicas claiming the same keys at once: each key goes to exactly one of them."""
    first, second = replicas
    wins: dict[str, list[str]] = {}

    async def claim_all(state: Any, name: str) -> None:
        for n in range(100):
            if await state.claim("slots", f"due-{n}", ttl=30, holder=name):
                wins.setdefault(f"due-{n}", []).append(name)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(claim_all, first, "a")
            tg.start_soon(claim_all, second, "b")
    assert sorted(wins) == sorted(f"due-{n}" for n in range(100))
    assert all(len(winners) == 1 for winners in wins.values())
