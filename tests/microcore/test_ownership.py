"""Owner: the ledger of everything one plugin registered through tools."""

from __future__ import annotations

import anyio
import pytest

from microcore.tooling import Owner, OwnerState, RegistrationError


async def test_owner_releases_newest_first() -> None:
    """release() undoes registrations in reverse order, sync and async alike."""
    owner = Owner("a.P")
    undone: list[str] = []

    async def undo_async() -> None:
        undone.append("second")

    owner.own("route", "GET /a", lambda: undone.append("first"))
    owner.own("subscription", "a.*", undo_async)
    assert owner.labels("route") == ["GET /a"]
    assert [r.kind for r in owner.registrations] == ["route", "subscription"]
    assert await owner.release() == []
    assert undone == ["second", "first"]
    assert owner.registrations == ()
    assert owner.released


async def test_registration_release_is_idempotent() -> None:
    """A registration released early (unsubscribe) is gone and not undone again."""
    owner = Owner("a.P")
    calls: list[int] = []
    registration = owner.own("subscription", "x", lambda: calls.append(1))
    await registration.release()
    await registration.release()
    await owner.release()
    assert calls == [1]
    assert registration.released
    assert "subscription" in repr(registration)


async def test_release_errors_are_isolated_and_returned() -> None:
    """One failing release does not stop the others; the errors are returned."""
    owner = Owner("a.P")
    done: list[str] = []

    def boom() -> None:
        raise RuntimeError("cannot undo")

    owner.own("route", "first", lambda: done.append("first"))
    owner.own("route", "broken", boom)
    errors = await owner.release()
    assert [str(e) for e in errors] == ["cannot undo"]
    assert done == ["first"]


async def test_owner_states_move_forward_only() -> None:
    """pending -> active -> released; activating twice or registering after release fails."""
    owner = Owner("a.P")
    assert owner.pending and owner.state is OwnerState.PENDING
    owner.activate()
    assert owner.active
    with pytest.raises(RuntimeError, match="is active, not pending"):
        owner.activate()
    owner.mark_released()
    assert owner.released
    with pytest.raises(RegistrationError, match=r"'a\.P' was unloaded; it cannot register route"):
        owner.own("route", "GET /late", lambda: None)
    assert repr(owner) == "<Owner a.P released (0 registrations)>"


async def test_owner_knows_what_it_replaces() -> None:
    """A reloaded plugin's owner points at the previous version's owner."""
    old = Owner("a.P")
    new = Owner("a.P", replaces=old)
    assert new.replaces is old


async def test_wait_idle_returns_once_every_call_into_the_plugin_left() -> None:
    """wait_idle() wakes every waiter when the last call leaves, not before."""
    owner = Owner("a.P")
    await owner.wait_idle()  # nothing in progress: returns at once
    owner.enter()
    owner.enter()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await owner.wait_idle()
        woken.append(n)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 1)
            tg.start_soon(waiter, 2)  # a second waiter shares the first one's event
            await anyio.wait_all_tasks_blocked()
            owner.leave()
            await anyio.wait_all_tasks_blocked()
            assert woken == []  # one call is still in progress
            owner.leave()
    assert sorted(woken) == [1, 2]
    assert owner.busy == 0
