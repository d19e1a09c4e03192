"""/system/feed: requests and events live over SSE, bounded for slow readers."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from microcore._dev.reload import Reloader
from tests.tools.system.conftest import PRODUCTION, SHOP, TOKEN, Boot
from tools.system._feed import FeedClient

Message = dict[str, Any]


class SseReader:
    """Drives one GET of an SSE route over raw ASGI; ``stall()`` stops reading like a stuck tab."""

    def __init__(self, app: Any, path: str = "/system/feed", headers: list[Any] | None = None):
        self.app = app
        self.scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": b"",
            "headers": headers or [],
            "client": ("127.0.0.1", 1),
        }
        self.status: int | None = None
        self.raw = b""
        self.arrived = anyio.Event()
        self.gone = anyio.Event()
        self.flowing = anyio.Event()
        self.flowing.set()
        self.finished = anyio.Event()

    async def run(self) -> None:
        try:
            await self.app(self.scope, self._receive, self._send)
        finally:
            self.finished.set()

    async def _receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return
        await self.flowing.wait()
        self.raw += message.get("body", b"")
        self.arrived.set()

    def stall(self) -> None:
        self.flowing = anyio.Event()

    def resume(self) -> None:
        self.flowing.set()

    def messages(self) -> list[Message]:
        """Complete messages so far: ``{"event": name, "data": parsed JSON}`` (pings skipped)."""
        out = []
        for block in self.raw.decode().split("\n\n")[:-1]:
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                key, _, val = line.partition(": ")
                fields[key] = val
            if "data" in fields:
                out.append({"event": fields.get("event"), "data": json.loads(fields["data"])})
        return out

    async def wait_for(self, check: Callable[[list[Message]], Any], timeout: float = 5.0) -> Any:
        """The first truthy ``check(messages)``, waiting for more messages up to ``timeout``."""
        with anyio.fail_after(timeout):
            while True:
                self.arrived = anyio.Event()
                found = check(self.messages())
                if found:
                    return found
                await self.arrived.wait()


def named(kind: str, **fields: Any) -> Callable[[list[Message]], Any]:
    """A check for the first message of ``kind`` whose data has ``fields``."""

    def check(messages: list[Message]) -> Any:
        for message in messages:
            data = message["data"]
            if message["event"] == kind and all(data.get(k) == v for k, v in fields.items()):
                return data
        return None

    return check


async def test_feed_streams_requests_and_their_events_live(boot: Boot) -> None:
    """After 'ready', a POST shows up as a request and its events, linked by the request id."""
    system = await boot()
    reader = SseReader(system.running.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.run)
        ready = await reader.wait_for(named("ready"))
        assert ready == {"buffer": 256, "payloads": True, "trace_url": None}
        await system.client.get("/system/status")  # the dashboard's own traffic: not shown
        placed = await system.client.post("/orders", json={"item": "pen"})
        request_id = placed.headers["x-request-id"]
        event = await reader.wait_for(named("event", name="order.placed"))
        request = await reader.wait_for(named("request", path="/orders"))
        chained = await reader.wait_for(named("event", name="invoice.created"))
        reader.gone.set()
    assert reader.status == 200
    assert event["correlation_id"] == request_id == request["request_id"]
    assert event["payload"] == {"item": "pen", "price": 3.5}
    assert request["status"] == 201
    assert request["route"] == "/orders"
    assert request["owner"] == "shop.OrderPlugin"
    assert chained["parent_id"] == event["id"]
    assert not named("request", path="/system/status")(reader.messages())


async def test_feed_open_lets_events_name_their_request(boot: Boot) -> None:
    """While a feed client watches, /system/events shows method, route and status of the cause."""
    system = await boot()
    reader = SseReader(system.running.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.run)
        await reader.wait_for(named("ready"))
        placed = await system.client.post("/orders", json={"item": "pen"})
        await reader.wait_for(named("event", name="invoice.created"))
        body = (await system.client.get("/system/events", params={"name": "order.*"})).json()
        reader.gone.set()
    (order,) = body["events"]
    assert order["caused_by"]["id"] == placed.headers["x-request-id"]
    assert order["caused_by"]["method"] == "POST"
    assert order["caused_by"]["route"] == "/orders"
    assert order["caused_by"]["status"] == 201
    assert body["traces"][0]["request"]["path"] == "/orders"


async def test_feed_hides_payloads_by_setting(boot: Boot) -> None:
    """With SYSTEM_FEED_PAYLOADS=0 events arrive without their payloads."""
    system = await boot(settings={"SYSTEM_FEED_PAYLOADS": "false"})
    reader = SseReader(system.running.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.run)
        assert (await reader.wait_for(named("ready")))["payloads"] is False
        await system.client.post("/orders", json={"item": "secret-thing"})
        event = await reader.wait_for(named("event", name="order.placed"))
        reader.gone.set()
    assert event["payload"] is None
    assert event["payload_hidden"] is True
    assert b"secret-thing" not in reader.raw


async def test_feed_stalled_client_drops_oldest_and_never_blocks_requests(boot: Boot) -> None:
    """A reader that stops reading loses the oldest items, is told how many, and slows no one."""
    system = await boot(settings={"SYSTEM_FEED_BUFFER": "8"})
    reader = SseReader(system.running.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.run)
        await reader.wait_for(named("ready"))
        reader.stall()
        with anyio.fail_after(10):  # every request is answered while the reader is stuck
            for n in range(100):
                assert (await system.client.get(f"/orders/{n}")).status_code == 200
        metrics = (await system.client.get("/system/metrics")).text
        assert "microcore_feed_clients 1" in metrics
        reader.resume()
        dropped = await reader.wait_for(named("dropped"))
        last = await reader.wait_for(named("request", path="/orders/99"))
        reader.gone.set()
    requests = [m for m in reader.messages() if m["event"] == "request"]
    # the generator held one item when the reader stalled; the ring kept the newest 8
    assert len(requests) <= 1 + 8
    assert dropped["dropped"] >= 100 - 8 - 1
    assert last["status"] == 200
    dropped_total = (await system.client.get("/system/metrics")).text
    assert f"microcore_feed_dropped_total {dropped['dropped']}" in dropped_total
    assert "microcore_feed_clients 0" in dropped_total


async def test_feed_refuses_clients_past_the_limit(boot: Boot) -> None:
    """Past SYSTEM_FEED_CLIENTS the new stream gets an error message and ends."""
    system = await boot(settings={"SYSTEM_FEED_CLIENTS": "1"})
    first, second = SseReader(system.running.app), SseReader(system.running.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        await first.wait_for(named("ready"))
        tg.start_soon(second.run)
        error = await second.wait_for(named("error"))
        with anyio.fail_after(5):
            await second.finished.wait()
        first.gone.set()
    assert error["code"] == "too_many_clients"
    assert "SYSTEM_FEED_CLIENTS" in error["message"]


async def test_feed_announces_reloads(boot: Boot) -> None:
    """A hot reload sends a 'reload' message so the dashboard refreshes what it shows."""
    system = await boot()
    reader = SseReader(system.running.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.run)
        await reader.wait_for(named("ready"))
        path = system.kernel.root / "domains/shop/plugins/price_plugin.py"
        path.write_text(textwrap.dedent(SHOP["domains/shop/plugins/price_plugin.py"]) + "\n# v2\n")
        await Reloader(system.kernel).apply([path])
        reload = await reader.wait_for(named("reload"))
        await reader.wait_for(named("plugins"))
        reader.gone.set()
    assert reload["reloaded_at"] == system.kernel.reloaded_at


async def test_feed_needs_the_token_outside_development(boot: Boot) -> None:
    """Outside development the feed answers 401 without the token and streams with it."""
    system = await boot(settings=PRODUCTION)
    refused = SseReader(system.running.app)
    with anyio.fail_after(5):
        await refused.run()
    assert refused.status == 401
    cookie = [(b"cookie", f"system_token={TOKEN}".encode())]
    allowed = SseReader(system.running.app, headers=cookie)
    async with anyio.create_task_group() as tg:
        tg.start_soon(allowed.run)
        await allowed.wait_for(named("ready"))
        allowed.gone.set()
    assert allowed.status == 200


async def test_feed_client_ring_keeps_the_newest_items() -> None:
    """A full ring drops its oldest item, counts it, and hands the rest over in order."""
    client = FeedClient(3)
    dropped = [client.put(("event", str(n).encode())) for n in range(5)]
    assert dropped == [False, False, False, True, True]
    items, missed = await client.take()
    assert [raw for _, raw in items] == [b"2", b"3", b"4"]
    assert missed == 2
    taken: list[tuple[list[tuple[str, bytes]], int]] = []

    async def take() -> None:
        taken.append(await client.take())

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert taken == []  # nothing left: take waits for the next item
        client.put(("event", b"5"))
    assert taken == [([("event", b"5")], 0)]


@pytest.mark.parametrize("setting", ["SYSTEM_FEED_BUFFER", "SYSTEM_FEED_CLIENTS"])
async def test_feed_limits_must_be_positive(boot: Boot, setting: str) -> None:
    """A zero feed limit fails the system tool at boot with a message naming the setting."""
    system = await boot(settings={setting: "0"})
    error = system.kernel.status().tools["system"].error
    assert error is not None
    assert setting in error.message
