"""The outbox relay against an in-memory store: failures of the database and of the bus,
deduplication by event id, shutdown. (The real tables: ``test_outbox.py``.)"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import anyio
import msgspec
import pytest
import structlog
import structlog.testing

from microcore import Event
from microcore.tooling import ConfigurationError
from tests.support import FakeKernel
from tests.tools.event_bus.conftest import Inbox, plugin, running_bus
from tools.config.config_tool import ConfigTool
from tools.event_bus import _outbox
from tools.event_bus._outbox import Relay, outbox_lease
from tools.event_bus.event_bus_tool import EventBusTool


class Row(msgspec.Struct):
    id: str
    body: bytes
    attempts: int = 0
    due: float = 0.0


class Store:
    """An outbox table in a dict; ``fail`` names the operations that raise."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.fail: set[str] = set()
        self.deleted: list[str] = []

    def _check(self, op: str) -> None:
        if op in self.fail:
            raise ConnectionError(f"{op}: database down")

    async def open(self) -> None:
        self._check("open")

    async def put(self, tx: Any, *, id: str, topic: str, body: bytes, lease: float) -> None:
        self._check("put")
        tx.rows.append(Row(id, body, due=anyio.current_time() + lease))
        tx.store = self

    async def claim(self, *, limit: int, lease: float) -> Sequence[Row]:
        self._check("claim")
        now = anyio.current_time()
        due = [r for r in self.rows.values() if r.due <= now][:limit]
        for row in due:
            row.due, row.attempts = now + lease, row.attempts + 1
        return [Row(r.id, r.body, r.attempts) for r in due]

    async def delete(self, ids: Sequence[str]) -> None:
        self._check("delete")
        for event_id in ids:
            self.rows.pop(event_id, None)
            self.deleted.append(event_id)

    async def release(self, ids: Sequence[str], *, delay: float) -> None:
        self._check("release")
        for event_id in ids:
            self.rows[event_id].due = anyio.current_time() + delay

    async def depth(self) -> int:
        return len(self.rows)


class Tx:
    """A transaction whose commit the test runs by hand."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.after: list[Any] = []
        self.store: Store | None = None

    def after_commit(self, callback: Any) -> None:
        self.after.append(callback)

    def commit(self) -> None:
        assert self.store is not None
        for row in self.rows:
            self.store.rows[row.id] = row
        for callback in self.after:
            callback()


def bus_with(store: Store, **settings: Any) -> AbstractAsyncContextManager[EventBusTool]:
    """A set-up memory bus whose outbox is ``store`` (the relay task is not started: tests
    drive it with ``relay_once``, or start it with ``on_boot_complete``)."""
    return running_bus(db=type("FakeDb", (), {"outbox": store})(), **settings)


def relay_of(bus: EventBusTool) -> Relay:
    relay = bus._router.outbox
    assert relay is not None
    return relay


def stored(event_id: str, n: int) -> Row:
    event = Event(
        name="t.x", payload={"n": n}, id=event_id, correlation_id="c", source="t.W", timestamp=1.0
    )
    return Row(event_id, msgspec.msgpack.encode(event))


async def test_relay_survives_a_database_outage_and_catches_up() -> None:
    """While the database refuses claims and deletes, the relay logs one warning and keeps
    going; once it answers, due rows are relayed and relayed rows deleted."""
    store = Store()
    store.rows["r1"] = stored("r1", 1)
    async with bus_with(store) as bus:
        inbox = Inbox()
        await plugin(bus, "t.S").subscribe("t.*", inbox)
        relay = relay_of(bus)
        store.fail = {"claim"}
        with structlog.testing.capture_logs() as logs:
            await relay.relay_once()
            await relay.relay_once()
        assert [(e["event"], e["log_level"]) for e in logs] == [
            ("outbox_claim_failed", "warning"),
            ("outbox_claim_failed", "debug"),
        ]
        store.fail = {"delete"}
        await relay.relay_once()
        await inbox.wait(1)
        assert store.rows.keys() == {"r1"}  # relayed, not deleted yet
        store.fail = set()
        store.rows["r1"].due = 0.0  # its lease ran out: a sweep finds it again
        await relay.relay_once()
        assert [e.id for e in inbox.events] == ["r1"]  # not sent twice
        assert store.rows == {}


async def test_relay_backs_off_while_the_bus_refuses() -> None:
    """An event the bus refuses goes back to the table with a delay (growing with its
    attempts), with the events behind it; a release the database refuses is logged."""
    store = Store()
    async with bus_with(store, EVENT_BUS_BUFFER=1, EVENT_BUS_PUBLISH_TIMEOUT=0.05) as bus:
        gate = anyio.Event()

        async def blocked(event: Event) -> None:
            await gate.wait()

        await plugin(bus, "t.Slow").subscribe("t.*", blocked)
        relay = relay_of(bus)
        txs = []
        for n in range(4):
            tx = Tx()
            await plugin(bus, "t.W").publish("t.x", {"n": n}, transaction=cast(Any, tx))
            txs.append(tx)
        for tx in txs:
            tx.commit()
        await relay.relay_once()  # 1 handled (blocked), 1 buffered, the 3rd refused
        held = sorted(store.rows)
        assert len(held) == 2
        assert all(store.rows[i].due > anyio.current_time() for i in held)
        store.fail = {"release"}
        store.rows[held[0]].due = 0.0
        with structlog.testing.capture_logs() as logs:
            await relay.relay_once()
        assert "outbox_release_failed" in [e["event"] for e in logs]
        store.fail = set()
        gate.set()
        for row in store.rows.values():
            row.due = 0.0
        with anyio.fail_after(5):
            while store.rows:
                await relay.relay_once()


async def test_relay_sweeps_again_after_a_full_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """More due rows than one claim takes are relayed in the same pass of the relay task."""
    monkeypatch.setattr(_outbox, "_BATCH", 2)
    store = Store()
    for n in range(5):
        store.rows[f"r{n}"] = stored(f"r{n}", n)
    async with bus_with(store) as bus:
        inbox = Inbox()
        await plugin(bus, "t.S").subscribe("t.*", inbox)
        await bus.on_boot_complete()  # starts the relay task
        await inbox.wait(5)
        assert [e.payload["n"] for e in inbox.events] == [0, 1, 2, 3, 4]


async def test_relay_close_relays_what_committed() -> None:
    """At shutdown the events committed here are relayed before the bus drains."""
    store = Store()
    inbox = Inbox()
    async with bus_with(store) as bus:
        await plugin(bus, "t.S").subscribe("t.*", inbox)
        await bus.on_boot_complete()
        tx = Tx()
        await plugin(bus, "t.W").publish("t.x", {"n": 1}, transaction=cast(Any, tx))
        tx.commit()
    assert [e.payload for e in inbox.events] == [{"n": 1}]
    assert store.rows == {}


async def test_relay_remembers_a_bounded_number_of_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ids kept for deduplication are bounded (the oldest are forgotten)."""
    monkeypatch.setattr(_outbox, "_REMEMBERED", 2)
    store = Store()
    for n in range(4):
        store.rows[f"r{n}"] = stored(f"r{n}", n)
    async with bus_with(store) as bus:
        relay = relay_of(bus)
        await relay.relay_once()
        assert list(relay._relayed) == ["r2", "r3"]
        assert store.rows == {}


async def test_outbox_that_cannot_open_leaves_the_bus_working() -> None:
    """A database that fails to create the outbox: a warning, no outbox, plain publish works."""
    store = Store()
    store.fail = {"open"}
    with structlog.testing.capture_logs() as logs:
        async with bus_with(store) as bus:
            assert bus._router.outbox is None
            assert await bus.outbox_depth() is None
            await plugin(bus, "t.W").publish("t.x", {"n": 1})
    assert "outbox_unavailable" in [e["event"] for e in logs]


def test_outbox_lease_must_be_positive() -> None:
    """EVENT_BUS_OUTBOX_LEASE <= 0 is refused, naming the setting."""
    kernel = FakeKernel({"EVENT_BUS_OUTBOX_LEASE": "0"})
    with pytest.raises(ConfigurationError, match="EVENT_BUS_OUTBOX_LEASE"):
        outbox_lease(ConfigTool(kernel))
    assert outbox_lease(ConfigTool(FakeKernel({}))) == 10.0
