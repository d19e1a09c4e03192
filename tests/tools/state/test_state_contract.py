"""The state contract, on every store (memory and Redis): namespaces, plain-data values
copied in and out, TTLs, atomic incr that keeps the TTL, sorted live keys."""

from __future__ import annotations

import math
import sys
from typing import Any

import anyio
import pytest

from tests.support import eventually


def _error(state: Any) -> Any:
    """The running project's StateError (its copy of ``tools.state``, not this repo's)."""
    return sys.modules["tools.state"].StateError


async def _wait_gone(state: Any, namespace: str, key: str) -> None:
    """Until the key reads as unset; fails after a deadline (a TTL that never fires)."""

    async def gone() -> bool:
        return bool(await state.get(namespace, key, default="unset") == "unset")

    await eventually(gone, interval=0.01)


async def test_get_returns_default_for_missing_key(state: Any) -> None:
    """An unset key answers the default (None unless given)."""
    assert await state.get("ns", "missing") is None
    assert await state.get("ns", "missing", default=7) == 7


async def test_set_then_get_round_trips_plain_data(state: Any) -> None:
    """Strings, numbers, lists, dicts, bytes, booleans and None come back equal."""
    value = {"items": [1, 2.5, "x", None, True], "raw": b"\x00\x01", "nested": {"é": [[]]}}
    await state.set("carts", "u1", value)
    assert await state.get("carts", "u1") == value
    await state.set("carts", "nothing", None)
    assert await state.get("carts", "nothing", default="unset") is None


async def test_set_overwrites_the_value(state: Any) -> None:
    """A second set replaces the first value, whatever its type."""
    await state.set("ns", "k", [1, 2])
    await state.set("ns", "k", "now a string")
    assert await state.get("ns", "k") == "now a string"


async def test_namespaces_and_keys_never_collide(state: Any) -> None:
    """One key in two namespaces holds two values, whatever characters the names use."""
    pairs = [("a", "k"), ("b", "k"), ("a:b", "c"), ("a", "b:c"), ("ns*", "?[x]"), ("ü", "😀")]
    for n, (namespace, key) in enumerate(pairs):
        await state.set(namespace, key, n)
    assert [await state.get(namespace, key) for namespace, key in pairs] == list(range(6))
    assert await state.keys("a") == ["b:c", "k"]
    assert await state.keys("ns*") == ["?[x]"]


async def test_get_returns_a_copy(state: Any) -> None:
    """Mutating a value read back does not change what is stored."""
    await state.set("ns", "k", {"n": [1]})
    value = await state.get("ns", "k")
    value["n"].append(2)
    assert await state.get("ns", "k") == {"n": [1]}


async def test_unstorable_value_is_refused(state: Any) -> None:
    """A value that is not plain data is refused with what can be stored."""
    with pytest.raises(_error(state), match="cannot be stored"):
        await state.set("ns", "k", object())
    assert await state.get("ns", "k") is None


async def test_ttl_key_lives_then_expires(state: Any) -> None:
    """A key with a TTL is readable at once, then gone from get and keys once it passes."""
    await state.set("sessions", "long", "bob", ttl=60)
    await state.set("sessions", "short", "alice", ttl=0.2)
    assert await state.get("sessions", "short") == "alice"
    assert await state.keys("sessions") == ["long", "short"]
    await _wait_gone(state, "sessions", "short")
    assert await state.keys("sessions") == ["long"]
    assert await state.get("sessions", "long") == "bob"


async def test_set_without_ttl_clears_an_earlier_ttl(state: Any) -> None:
    """Overwriting a key without a TTL makes it permanent."""
    await state.set("ns", "k", 1, ttl=0.2)
    await state.set("ns", "k", 2)
    await state.set("ns", "sentinel", 0, ttl=0.2)
    await _wait_gone(state, "ns", "sentinel")
    assert await state.get("ns", "k") == 2
    assert await state.keys("ns") == ["k"]


async def test_reset_ttl_replaces_the_expiry(state: Any) -> None:
    """Re-setting a key with a new TTL replaces the old expiry."""
    await state.set("ns", "k", 1, ttl=0.2)
    await state.set("ns", "k", 2, ttl=60)
    await state.set("ns", "sentinel", 0, ttl=0.2)
    await _wait_gone(state, "ns", "sentinel")
    assert await state.get("ns", "k") == 2


async def test_invalid_ttl_is_refused(state: Any) -> None:
    """A zero, negative or non-number TTL is refused."""
    for ttl in (0, -1, "10", True):
        with pytest.raises(_error(state), match="ttl must be a positive number"):
            await state.set("ns", "k", 1, ttl=ttl)
    assert await state.get("ns", "k") is None


async def test_delete_removes_key_and_says_whether_it_existed(state: Any) -> None:
    """delete answers True for a present key, False after; the key leaves keys()."""
    await state.set("ns", "k", 1)
    await state.set("ns", "other", 1)
    assert await state.delete("ns", "k") is True
    assert await state.delete("ns", "k") is False
    assert await state.get("ns", "k") is None
    assert await state.keys("ns") == ["other"]


async def test_delete_of_an_expired_key_answers_false(state: Any) -> None:
    """A key whose TTL passed no longer exists for delete either."""
    await state.set("ns", "k", 1, ttl=0.05)
    await _wait_gone(state, "ns", "k")
    assert await state.delete("ns", "k") is False


async def test_incr_counts_from_zero_and_by_step(state: Any) -> None:
    """incr on an unset key starts from 0; by may be negative; get reads the integer."""
    assert await state.incr("hits", "home") == 1
    assert await state.incr("hits", "home", by=10) == 11
    assert await state.incr("hits", "home", by=-20) == -9
    assert await state.get("hits", "home") == -9
    assert await state.keys("hits") == ["home"]


async def test_incr_continues_a_value_set_as_an_integer(state: Any) -> None:
    """A counter written with set (small or large) is incremented exactly."""
    await state.set("c", "small", 5)
    await state.set("c", "large", 2**40)
    assert await state.incr("c", "small") == 6
    assert await state.incr("c", "large", by=-1) == 2**40 - 1


async def test_incr_keeps_the_key_ttl(state: Any) -> None:
    """A rate-limit counter set with a TTL still expires after increments."""
    await state.set("rate", "ip", 0, ttl=0.3)
    assert await state.incr("rate", "ip") == 1
    assert await state.incr("rate", "ip") == 2
    await _wait_gone(state, "rate", "ip")
    assert await state.incr("rate", "ip") == 1


async def test_incr_refuses_non_integers(state: Any) -> None:
    """incr on a string, float or boolean value, or with a non-integer step, is refused."""
    await state.set("ns", "name", "alice")
    await state.set("ns", "ratio", 1.0)
    await state.set("ns", "flag", True)
    for key, kind in (("name", "str"), ("ratio", "float"), ("flag", "bool")):
        with pytest.raises(_error(state), match=f"holds {kind}, not an integer"):
            await state.incr("ns", key)
    for step in (1.5, True):
        with pytest.raises(_error(state), match="integer step"):
            await state.incr("ns", "n", by=step)
    assert await state.get("ns", "name") == "alice"


async def test_incr_is_atomic_under_concurrency(state: Any) -> None:
    """Many tasks incrementing at once lose no increment."""

    async def bump() -> None:
        for _ in range(50):
            await state.incr("c", "n")

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(bump)
    assert await state.get("c", "n") == 1000


async def test_keys_lists_live_keys_sorted(state: Any) -> None:
    """keys answers the namespace's live keys, sorted; other namespaces are not mixed in."""
    for key in ("b", "a", "B", "é", "a1"):
        await state.set("ns", key, 1)
    await state.set("ns", "gone", 1, ttl=0.05)
    await state.set("other", "z", 1)
    await _wait_gone(state, "ns", "gone")
    assert await state.keys("ns") == ["B", "a", "a1", "b", "é"]
    assert await state.keys("empty") == []


async def test_keys_of_a_large_namespace(state: Any) -> None:
    """Hundreds of keys come back complete and sorted."""
    names = [f"user:{n:04d}" for n in range(300)]
    writers = anyio.Semaphore(16)  # written concurrently, not as one burst of connections

    async def write(name: str) -> None:
        async with writers:
            await state.set("big", name, {"n": name})

    async with anyio.create_task_group() as tg:
        for name in reversed(names):
            tg.start_soon(write, name)
    assert await state.keys("big") == names


async def test_values_past_64_bit_integers_are_refused_clearly(state: Any) -> None:
    """An int msgpack cannot hold, or an incr past 64 bits, raises StateError on every store."""
    with pytest.raises(_error(state), match="cannot be stored"):
        await state.set("ns", "big", 2**64)
    await state.set("ns", "n", 2**63 - 10)
    with pytest.raises(_error(state)):  # Redis refuses already past 2**53 (inexact floats)
        await state.incr("ns", "n", 20)
    assert await state.get("ns", "n") == 2**63 - 10


async def test_claim_is_taken_once_until_it_expires(state: Any) -> None:
    """claim answers True to the first caller only; the key reads True and lists in keys();
    once its ttl passes the next claim wins."""
    assert await state.claim("digest", "day-1", ttl=0.2) is True
    assert await state.claim("digest", "day-1", ttl=0.2) is False
    assert await state.get("digest", "day-1") is True
    assert await state.keys("digest") == ["day-1"]
    await _wait_gone(state, "digest", "day-1")
    assert await state.claim("digest", "day-1", ttl=60) is True


async def test_claim_refuses_a_key_set_otherwise(state: Any) -> None:
    """A key written with set is held: claim leaves its value alone."""
    await state.set("locks", "k", "written")
    assert await state.claim("locks", "k", ttl=5) is False
    assert await state.claim("locks", "k", ttl=5, holder="someone") is False
    assert await state.get("locks", "k") == "written"


async def test_claim_with_a_holder_renews_and_releases(state: Any) -> None:
    """The holder's claim renews (restarting the ttl); another holder is refused; release
    deletes only for the holder."""
    assert await state.claim("locks", "import", ttl=0.2, holder="replica-a") is True
    assert await state.claim("locks", "import", ttl=0.2, holder="replica-b") is False
    assert await state.claim("locks", "import", ttl=0.2) is False
    assert await state.get("locks", "import") == "replica-a"
    assert await state.claim("locks", "import", ttl=60, holder="replica-a") is True  # renewed
    await state.set("locks", "sentinel", 0, ttl=0.2)
    await _wait_gone(state, "locks", "sentinel")
    assert await state.get("locks", "import") == "replica-a"
    assert await state.release("locks", "import", "replica-b") is False
    assert await state.get("locks", "import") == "replica-a"
    assert await state.release("locks", "import", "replica-a") is True
    assert await state.release("locks", "import", "replica-a") is False
    assert await state.keys("locks") == []
    assert await state.claim("locks", "import", ttl=5, holder="replica-b") is True


async def test_claim_is_atomic_under_concurrency(state: Any) -> None:
    """Of many tasks claiming one key at once, exactly one wins."""
    won: list[int] = []

    async def attempt(n: int) -> None:
        if await state.claim("race", "slot", ttl=30, holder=f"task-{n}"):
            won.append(n)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(attempt, n)
    assert len(won) == 1
    assert await state.get("race", "slot") == f"task-{won[0]}"


async def test_claim_refuses_a_missing_ttl_or_holder(state: Any) -> None:
    """A claim needs a positive ttl (it must free itself) and a non-empty string holder."""
    with pytest.raises(_error(state), match="needs a ttl"):
        await state.claim("ns", "k", None)
    for ttl in (0, -1, "10", True, math.nan):
        with pytest.raises(_error(state), match="ttl must be a positive number"):
            await state.claim("ns", "k", ttl)
    with pytest.raises(_error(state), match="ttl must be a finite number"):
        await state.claim("ns", "k", math.inf)
    for holder in ("", 7):
        with pytest.raises(_error(state), match="holder must be a non-empty string"):
            await state.claim("ns", "k", 5, holder=holder)
        with pytest.raises(_error(state), match="holder must be a non-empty string"):
            await state.release("ns", "k", holder)
    assert await state.keys("ns") == []


async def test_incr_ttl_applies_to_a_new_key_only(state: Any) -> None:
    """incr(..., ttl=) starts a new counter that expires; counting on keeps that expiry."""
    assert await state.incr("rate", "window", ttl=0.3) == 1
    assert await state.incr("rate", "window", ttl=60) == 2  # an existing key keeps its TTL
    await state.set("rate", "kept", 5)
    assert await state.incr("rate", "kept", ttl=0.2) == 6  # no TTL before: none after
    await _wait_gone(state, "rate", "window")
    assert await state.get("rate", "kept") == 6
    assert await state.incr("rate", "window", ttl=60) == 1
    with pytest.raises(_error(state)):
        await state.incr("rate", "new", ttl=-1)
