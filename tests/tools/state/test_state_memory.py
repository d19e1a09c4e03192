"""The memory store on a controllable clock: TTLs to the tick, memory that does not grow.

The behaviour every store shares is in test_state_contract.py.
"""

from __future__ import annotations

import pytest

from tools.state.memory import MemoryBackend


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A clock at t=1000 s that only moves when told."""
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryBackend:
    """A memory store on the fake clock."""
    return MemoryBackend(clock=clock)


async def test_ttl_expires_key_after_its_time(store: MemoryBackend, clock: FakeClock) -> None:
    """A key with a TTL is there until the TTL passes, then gone from get and keys."""
    await store.set("sessions", "s1", "alice", ttl=30)
    clock.advance(29.9)
    assert await store.get("sessions", "s1") == "alice"
    clock.advance(0.1)
    assert await store.get("sessions", "s1") is None
    assert await store.keys("sessions") == []


async def test_set_without_ttl_clears_an_earlier_ttl(
    store: MemoryBackend, clock: FakeClock
) -> None:
    """Overwriting a key without a TTL makes it permanent."""
    await store.set("ns", "k", 1, ttl=5)
    await store.set("ns", "k", 2)
    clock.advance(10)
    assert await store.get("ns", "k") == 2


async def test_reset_ttl_extends_life(store: MemoryBackend, clock: FakeClock) -> None:
    """Re-setting a key with a new TTL replaces the old expiry."""
    await store.set("ns", "k", 1, ttl=5)
    clock.advance(4)
    await store.set("ns", "k", 2, ttl=5)
    clock.advance(4)
    assert await store.get("ns", "k") == 2
    clock.advance(1)
    assert await store.get("ns", "k") is None


async def test_expired_keys_are_forgotten_without_access(
    store: MemoryBackend, clock: FakeClock
) -> None:
    """Keys written once with a TTL do not stay in memory after expiring."""
    for i in range(100):
        await store.set("tmp", f"k{i}", i, ttl=1)
    clock.advance(2)
    await store.set("other", "k", 1)
    assert "tmp" not in store._data


async def test_rewriting_a_key_with_ttl_keeps_expiry_heap_bounded(store: MemoryBackend) -> None:
    """A key re-set with a TTL on every request does not grow memory without bound."""
    for i in range(10_000):
        await store.set("sessions", "s1", i, ttl=3600)
    assert len(store._expiry) <= 4096


async def test_incr_keeps_the_key_ttl(store: MemoryBackend, clock: FakeClock) -> None:
    """A rate-limit counter set with a TTL still expires after increments."""
    await store.set("rate", "ip", 0, ttl=60)
    clock.advance(30)
    assert await store.incr("rate", "ip") == 1
    clock.advance(30)
    assert await store.get("rate", "ip") is None
    assert await store.incr("rate", "ip") == 1


async def test_keys_lists_live_keys_sorted(store: MemoryBackend, clock: FakeClock) -> None:
    """keys answers the namespace's live keys, sorted; other namespaces are not mixed in."""
    await store.set("ns", "b", 1)
    await store.set("ns", "a", 1)
    await store.set("ns", "gone", 1, ttl=1)
    await store.set("other", "z", 1)
    clock.advance(1)
    assert await store.keys("ns") == ["a", "b"]
    assert await store.keys("empty") == []
