"""The outbox the db tool keeps for the event bus, and ``tx.after_commit``: the same on every
driver (SQLite file, ``:memory:``, PostgreSQL)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import anyio
import pytest
import structlog
import structlog.testing


async def test_after_commit_runs_after_the_commit_only(db: Any) -> None:
    """Callbacks run in order once the outermost block committed (its rows visible), never
    when it rolls back."""
    seen: list[object] = []

    async def count() -> int:
        row = await db.query_one("SELECT COUNT(*) AS n FROM products")
        return int(row["n"])

    async with db.transaction() as tx:
        await tx.execute("INSERT INTO products (name) VALUES ('Pen')")
        tx.after_commit(lambda: seen.append("first"))
        tx.after_commit(lambda: seen.append("second"))
        assert seen == []
    assert seen == ["first", "second"]
    assert await count() == 1
    with pytest.raises(KeyError):
        async with db.transaction() as tx:
            tx.after_commit(lambda: seen.append("rolled back"))
            raise KeyError("boom")
    assert seen == ["first", "second"]


async def test_after_commit_follows_savepoints(db: Any) -> None:
    """A nested block's callbacks wait for the outermost commit; a nested block that rolls
    back drops its own callbacks only."""
    seen: list[str] = []
    async with db.transaction() as tx:
        async with tx.transaction() as kept:
            kept.after_commit(lambda: seen.append("kept"))
        assert seen == []
        with pytest.raises(KeyError):
            async with tx.transaction() as dropped:
                dropped.after_commit(lambda: seen.append("dropped"))
                raise KeyError("boom")
        tx.after_commit(lambda: seen.append("outer"))
    assert seen == ["kept", "outer"]


async def test_after_commit_failure_is_logged_and_the_rest_run(db: Any) -> None:
    """A callback that raises does not undo the commit nor stop the callbacks after it."""
    seen: list[str] = []

    def broken() -> None:
        raise RuntimeError("callback broke")

    with structlog.testing.capture_logs() as logs:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO products (name) VALUES ('Pen')")
            tx.after_commit(broken)
            tx.after_commit(lambda: seen.append("after"))
    assert seen == ["after"]
    assert await db.query("SELECT name FROM products") == [{"name": "Pen"}]
    assert [e["event"] for e in logs] == ["db_after_commit_failed"]


async def test_after_commit_outside_the_block_is_refused(db: Any, errors: ModuleType) -> None:
    """A transaction that ended takes no callback."""
    async with db.transaction() as tx:
        pass
    with pytest.raises(errors.ProgrammingError, match="has ended"):
        tx.after_commit(lambda: None)


async def test_outbox_message_exists_only_when_its_transaction_commits(db: Any) -> None:
    """``put`` writes in the caller's transaction: rolled back with it, committed with it,
    leased to the writer until its lease runs out."""
    outbox = db.outbox
    await outbox.open()
    await outbox.open()  # idempotent: replicas open it together
    with pytest.raises(KeyError):
        async with db.transaction() as tx:
            await outbox.put(tx, id="e0", topic="t.x", body=b"gone", lease=60)
            raise KeyError("boom")
    assert await outbox.depth() == 0
    async with db.transaction() as tx:
        await outbox.put(tx, id="e1", topic="t.x", body=b"\x00one", lease=60)
    assert await outbox.depth() == 1
    assert await outbox.claim(limit=10, lease=60) == []  # the writer's, for now
    async with db.transaction() as tx:
        await outbox.put(tx, id="e2", topic="t.y", body=b"two", lease=0)
    [due] = await outbox.claim(limit=10, lease=60)
    assert (due.id, due.topic, due.body, due.attempts) == ("e2", "t.y", b"two", 1)
    assert await outbox.claim(limit=10, lease=60) == []  # leased by that claim
    await outbox.release(["e2"], delay=0)
    [again] = await outbox.claim(limit=10, lease=60)
    assert (again.id, again.attempts) == ("e2", 2)
    await outbox.delete(["e1", "e2"])
    assert await outbox.depth() == 0


async def test_outbox_claims_oldest_first_and_each_row_once(db: Any) -> None:
    """Due rows come in commit order, a batch at a time; concurrent claims never share a
    row (PostgreSQL: FOR UPDATE SKIP LOCKED)."""
    outbox = db.outbox
    await outbox.open()
    ids = [f"e{i:03}" for i in range(60)]
    async with db.transaction() as tx:
        for event_id in ids:
            await outbox.put(tx, id=event_id, topic="t.x", body=b"x", lease=0)
    first = await outbox.claim(limit=5, lease=60)
    assert [m.id for m in first] == ids[:5]
    claimed: list[list[str]] = []

    async def claim() -> None:
        claimed.append([m.id for m in await outbox.claim(limit=20, lease=60)])

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(claim)
    every = [event_id for batch in claimed for event_id in batch]
    assert sorted(every) == ids[5:]  # all of the rest, none twice
    assert await outbox.depth() == 60


async def test_outbox_duplicate_id_is_refused(db: Any, errors: ModuleType) -> None:
    """An id is written once: a second message with it fails its transaction."""
    outbox = db.outbox
    await outbox.open()
    async with db.transaction() as tx:
        await outbox.put(tx, id="same", topic="t.x", body=b"1", lease=0)
    with pytest.raises(errors.IntegrityError):
        async with db.transaction() as tx:
            await outbox.put(tx, id="same", topic="t.x", body=b"2", lease=0)
    assert await outbox.depth() == 1
