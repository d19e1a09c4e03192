"""Transactional outbox: ``publish(name, payload, transaction=tx)`` commits with ``tx``.

Every test runs on the four combinations: SQLite and PostgreSQL, in process and
over NATS (each NATS run on its own stream). The project has a ``shop.Seen``
plugin that records every ``product.*`` event it handles in a ``seen`` table,
so what was delivered, and how often, is read from the database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import structlog
import structlog.testing

from microcore import Event
from microcore.testing import RunningApp, start_app
from microcore.tooling import Owner
from tests.support import NATS_URL, delete_stream, eventually
from tests.tools.conftest import require_service

TOOLS = ["config", "logger", "db", "event_bus"]

SEEN_PLUGIN = """
from microcore import Event, Plugin
from tools.db import Db
from tools.event_bus import EventBus


class SeenPlugin(Plugin):
    def __init__(self, db: Db, event_bus: EventBus) -> None:
        self.db, self.bus = db, event_bus

    async def on_boot(self) -> None:
        await self.bus.subscribe("product.*", self.on_event)

    async def on_event(self, event: Event) -> None:
        await self.db.execute(
            "INSERT INTO seen (event_id, name, n) VALUES (?, ?, ?)",
            (event.id, event.name, event.payload["n"]),
        )
"""

SEEN_TABLE = "CREATE TABLE seen (event_id TEXT NOT NULL, name TEXT NOT NULL, n INTEGER)\n"

Boot = Callable[..., Awaitable[RunningApp]]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return "sqlite:///data/app.db"


@pytest.fixture(params=["memory", "nats"])
async def bus_settings(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    """In process, then over NATS on a stream of the test's own (deleted afterwards)."""
    if request.param == "memory":
        yield {"EVENT_BUS_URL": "memory://"}
        return
    require_service("NATS", NATS_URL, 4222)
    stream = f"outbox_{uuid.uuid4().hex[:10]}"
    try:
        yield {"EVENT_BUS_URL": NATS_URL, "EVENT_BUS_STREAM": stream}
    finally:
        await delete_stream(stream)


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    """The ``shop`` domain: the ``seen`` table and the plugin that fills it."""
    return make_project(
        {
            "domains/shop/migrations/001_seen.sql": SEEN_TABLE,
            "domains/shop/plugins/seen_plugin.py": SEEN_PLUGIN,
        },
        tools=TOOLS,
    )


@pytest.fixture
async def boot(
    project: Path, database_url: str, bus_settings: dict[str, str]
) -> AsyncIterator[Boot]:
    """``await boot(**settings)``: the project on this combination, stopped afterwards."""
    started: list[RunningApp] = []

    async def start(**settings: str) -> RunningApp:
        running = await start_app(
            project, settings={"DATABASE_URL": database_url, **bus_settings, **settings}
        )
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in reversed(started):
            await running.stop()


def publisher(app: RunningApp) -> Any:
    """The bus as a plugin ``shop.Writer`` receives it."""
    owner = Owner("shop.Writer")
    owner.activate()
    return app.kernel.tool("event_bus").bind(owner)


async def seen(app: RunningApp) -> list[dict[str, Any]]:
    db: Any = app.kernel.tool("db")
    return list(await db.query("SELECT event_id, name, n FROM seen ORDER BY n"))


async def depth(app: RunningApp) -> int:
    return int(await app.kernel.tool("event_bus").outbox_depth())  # type: ignore[attr-defined]


async def test_outbox_event_is_relayed_after_commit(boot: Boot) -> None:
    """An event published with ``transaction=tx`` is delivered once, with the id publish
    returned, after the commit; the outbox is empty afterwards."""
    app = await boot()
    db: Any = app.kernel.tool("db")
    bus = publisher(app)
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO seen (event_id, name, n) VALUES ('row', 'row', 0)")
        event_id = await bus.publish("product.created", {"n": 1}, transaction=tx)
        assert await depth(app) == 0  # not committed: invisible to everyone else
    await eventually(lambda: _has(app, 2), timeout=10)
    assert await seen(app) == [
        {"event_id": "row", "name": "row", "n": 0},
        {"event_id": event_id, "name": "product.created", "n": 1},
    ]
    await eventually(lambda: _depth_is(app, 0), timeout=10)
    [recorded] = [e for e in app.kernel.tool("event_bus").history() if e.id == event_id]  # type: ignore[attr-defined]
    assert recorded.source == "shop.Writer"


async def test_outbox_rolled_back_transaction_publishes_nothing(boot: Boot) -> None:
    """A rolled-back transaction (or nested block) publishes nothing; events published after
    it arrive alone."""
    app = await boot()
    db: Any = app.kernel.tool("db")
    bus = publisher(app)
    with pytest.raises(KeyError):
        async with db.transaction() as tx:
            await bus.publish("product.created", {"n": 1}, transaction=tx)
            raise KeyError("boom")
    async with db.transaction() as tx:
        with pytest.raises(KeyError):
            async with tx.transaction() as inner:
                await bus.publish("product.created", {"n": 2}, transaction=inner)
                raise KeyError("boom")
        await bus.publish("product.created", {"n": 3}, transaction=tx)
    await bus.publish("product.deleted", {"n": 4})
    await eventually(lambda: _has(app, 2), timeout=10)
    assert [r["n"] for r in await seen(app)] == [3, 4]
    await eventually(lambda: _depth_is(app, 0), timeout=10)


async def test_outbox_rows_left_by_a_crash_are_relayed_at_the_next_boot(boot: Boot) -> None:
    """A committed row nobody relayed (its writer died) is relayed once at the next boot,
    after its lease ran out."""
    first = await boot()
    db: Any = first.kernel.tool("db")
    event_id = f"crash-{uuid.uuid4().hex}"
    async with db.transaction() as tx:  # what a writer that died before relaying left
        await db.outbox.put(
            tx, id=event_id, topic="product.created", body=_body(event_id, n=7), lease=1.0
        )
    await first.stop()
    second = await boot()
    await eventually(lambda: _has(second, 1), timeout=15)
    assert await seen(second) == [{"event_id": event_id, "name": "product.created", "n": 7}]
    await eventually(lambda: _depth_is(second, 0), timeout=10)


async def test_outbox_retries_until_the_bus_takes_the_event(boot: Boot) -> None:
    """While the bus refuses an event (in process: a subscriber's buffer full past the
    publish wait), the commit is unaffected and the event is relayed later; every
    subscriber handles each event once, the fast one too."""
    app = await boot(EVENT_BUS_BUFFER="1", EVENT_BUS_PUBLISH_TIMEOUT="0.2")
    db: Any = app.kernel.tool("db")
    bus = publisher(app)
    gate = anyio.Event()
    slow: list[int] = []

    async def blocked(event: Event) -> None:
        await gate.wait()
        slow.append(event.payload["n"])

    owner = Owner("shop.Slow")
    owner.activate()
    slow_bus: Any = app.kernel.tool("event_bus").bind(owner)
    await slow_bus.subscribe("product.*", blocked)
    await app.kernel.tool("event_bus").on_boot_complete()
    with structlog.testing.capture_logs() as logs:
        for n in range(1, 6):
            async with db.transaction() as tx:
                await bus.publish("product.created", {"n": n}, transaction=tx)
        if app.kernel.settings["EVENT_BUS_URL"].startswith("memory"):  # NATS stores them all

            def refused() -> bool:
                return any(entry["event"] == "outbox_relay_failed" for entry in logs)

            await eventually(refused, timeout=10)
            assert await depth(app) >= 1  # held back, in the table
            assert await _has(app, 1)  # the first reached the other subscriber
        gate.set()
    await eventually(lambda: _has(app, 5), timeout=30)
    await eventually(lambda: len(slow) == 5, timeout=30)
    assert [r["n"] for r in await seen(app)] == [1, 2, 3, 4, 5]
    assert sorted(slow) == [1, 2, 3, 4, 5]
    await eventually(lambda: _depth_is(app, 0), timeout=10)


async def test_outbox_without_a_db_tool_refuses_clearly(
    make_project: Callable[..., Path],
) -> None:
    """Without a database, ``transaction=`` fails saying why, and plain publish works."""
    root = make_project({}, tools=["config", "logger", "event_bus"])
    app = await start_app(root, settings={})
    try:
        bus = publisher(app)
        with pytest.raises(Exception, match="has no outbox") as caught:
            await bus.publish("product.created", {"n": 1}, transaction=object())
        assert type(caught.value).__name__ == "OutboxUnavailable"
        assert await app.kernel.tool("event_bus").outbox_depth() is None  # type: ignore[attr-defined]
        assert await bus.publish("product.created", {"n": 2})
    finally:
        await app.stop()


async def _has(app: RunningApp, count: int) -> bool:
    return len(await seen(app)) >= count


async def _depth_is(app: RunningApp, expected: int, *, at_least: bool = False) -> bool:
    now = await depth(app)
    return now >= expected if at_least else now == expected


async def test_outbox_depth_in_metrics_and_graph(make_project: Callable[..., Path]) -> None:
    """/system/metrics has ``microcore_outbox_pending`` and /system/graph ``outbox``: the rows
    committed and not relayed yet; both fall to 0 once relayed."""
    root = make_project(
        {"domains/shop/migrations/001_seen.sql": SEEN_TABLE},
        tools=["config", "logger", "db", "event_bus", "http", "system"],
    )
    app = await start_app(root, settings={"MICROCORE_ENV": "development"})
    transport = httpx.ASGITransport(app=app.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def pending() -> tuple[str, Any]:
                metrics = (await client.get("/system/metrics")).text
                line = next(x for x in metrics.splitlines() if x.startswith("microcore_outbox_"))
                return line, (await client.get("/system/graph")).json()["outbox"]

            assert await pending() == ("microcore_outbox_pending 0", 0)
            db: Any = app.kernel.tool("db")
            async with db.transaction() as tx:  # a row whose writer died: due in 1 s
                await db.outbox.put(tx, id="e1", topic="product.created", body=_body("e1"), lease=1)
            assert await pending() == ("microcore_outbox_pending 1", 1)
            await eventually(lambda: _pending_is(pending, 0), timeout=10)
    finally:
        await app.stop()


async def _pending_is(pending: Callable[[], Awaitable[tuple[str, Any]]], count: int) -> bool:
    return bool((await pending())[1] == count)


def _body(event_id: str, *, n: int = 1) -> bytes:
    """An event as the outbox stores it."""
    event = Event(
        name="product.created",
        payload={"n": n},
        id=event_id,
        correlation_id="c1",
        source="shop.Writer",
        timestamp=1.0,
    )
    return msgspec.msgpack.encode(event)
