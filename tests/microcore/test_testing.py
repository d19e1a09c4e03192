"""microcore.testing: the app, client and events fixtures, used as a project's tests use them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from microcore import Event
from microcore._testclient import SseMessage, _parse
from microcore.testing import (
    START_TIMEOUT,
    TEST_SETTINGS,
    EventRecorder,
    Kernel,
    RunningApp,
    TestClient,
    make_event,
    record_events,
    start_app,
)
from microcore.tooling import ConfigurationError, DependencyError
from tests.conftest import ProjectFactory

SHOP_PLUGIN = """
from microcore import Plugin


class ShopPlugin(Plugin):
    def __init__(self, http, event_bus, state, config):
        self.http, self.bus, self.state, self.config = http, event_bus, state, config

    async def on_boot(self):
        await self.bus.publish("shop.booted", {})
        self.http.add_endpoint("/orders", "POST", self.create)
        self.http.add_endpoint("/greeting", "GET", self.greeting)
        self.http.add_sse("/ticks", self.ticks)

    async def create(self, data, context):
        count = await self.state.incr("orders", "count")
        await self.bus.publish("order.created", {"n": count})
        return {"success": True, "count": count}

    async def greeting(self, data, context):
        return {"greeting": self.config.get("GREETING", "hi")}

    async def ticks(self, data, context):
        yield {"n": 1, "who": context.headers.get("x-who"), "q": dict(context.request.query_params)}
        yield context.event("two", event="tick", id="2", retry=500)
"""

FAKE_BUS = """
from microcore import Tool


class FakeBusTool(Tool):
    name = "event_bus"

    def tap(self, callback):
        self.callback = callback
        return lambda: None

    def history(self, *, correlation_id=None, limit=None):
        return []

    def flows(self):
        raise NotImplementedError
"""

BUS_WITHOUT_TAP = """
from microcore import Tool


class FakeBusTool(Tool):
    name = "event_bus"
"""


@pytest.fixture
def microcore_root(make_project: ProjectFactory) -> Path:
    """The project the app fixture boots in this module."""
    return make_project({"domains/shop/plugins/shop_plugin.py": SHOP_PLUGIN})


@pytest.fixture
def microcore_settings() -> dict[str, str]:
    """Extra settings for this module's app."""
    return {"GREETING": "hello"}


async def test_app_fixture_boots_the_project(app: RunningApp) -> None:
    """The app fixture boots the project at microcore_root with its plugins ok."""
    assert app.kernel.status().plugins["shop.ShopPlugin"].status == "ok"
    assert app.kernel.settings["DATABASE_URL"] == "sqlite://:memory:"


async def test_client_fixture_uses_settings(client: httpx.AsyncClient) -> None:
    """The client talks to the app; microcore_settings reach the config tool."""
    response = await client.get("/greeting")
    assert response.json() == {"greeting": "hello"}


async def test_isolation_first_test_starts_fresh(client: httpx.AsyncClient) -> None:
    """Each test gets a fresh app: the first order is number 1."""
    assert (await client.post("/orders", json={})).json()["count"] == 1


async def test_isolation_second_test_starts_fresh(client: httpx.AsyncClient) -> None:
    """Nothing from other tests leaks: the first order is number 1 again."""
    assert (await client.post("/orders", json={})).json()["count"] == 1


async def test_events_wait_for_returns_published_event(
    client: httpx.AsyncClient, events: EventRecorder
) -> None:
    """wait_for returns an event already published; published lists boot events too."""
    await client.post("/orders", json={})
    event = await events.wait_for("order.created", timeout=1.0)
    assert event.payload == {"n": 1}
    assert event.source == "shop.ShopPlugin"
    assert events.names() == ["shop.booted", "order.created"]
    assert events.published[-1] is event


async def test_events_wait_for_each_event_once(
    client: httpx.AsyncClient, events: EventRecorder
) -> None:
    """Successive waits return successive events; none left times out naming what was seen."""
    await client.post("/orders", json={})
    await client.post("/orders", json={})
    first = await events.wait_for("order.*")
    second = await events.wait_for("order.created")
    assert (first.payload["n"], second.payload["n"]) == (1, 2)
    with pytest.raises(TimeoutError, match=r"no event 'order.created' .* published: shop.booted"):
        await events.wait_for("order.created", timeout=0.05)


async def test_events_wait_for_future_events(
    client: httpx.AsyncClient, events: EventRecorder
) -> None:
    """Concurrent waiters each get their own event once it is published."""
    got: list[int] = []

    async def waiter() -> None:
        got.append((await events.wait_for("order.created", timeout=5.0)).payload["n"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        await client.post("/orders", json={})
        await client.post("/orders", json={})
    assert sorted(got) == [1, 2]


async def test_start_app_raises_boot_errors(make_project: ProjectFactory, tmp_path: Path) -> None:
    """A project that cannot boot raises its error from start_app; stop is idempotent."""
    duplicate = "from microcore import Tool\n\nclass T(Tool):\n    name = 'config'\n"
    root = make_project({"tools/other/other_tool.py": duplicate}, tools=["config"])
    with pytest.raises(ConfigurationError, match="two tools are named 'config'"):
        await start_app(root)
    (tmp_path / "empty").mkdir()
    running = await start_app(tmp_path / "empty")
    await running.stop()
    await running.stop()


async def test_start_that_times_out_stops_the_boot(make_project: ProjectFactory) -> None:
    """A boot slower than start()'s timeout is cancelled and shut down before TimeoutError
    reaches the caller: no kernel keeps running in the background."""
    root = make_project(
        {
            "domains/shop/plugins/slow_plugin.py": """
            import anyio
            from microcore import Plugin


            class SlowPlugin(Plugin):
                async def on_boot(self):
                    await anyio.Event().wait()
            """,
        },
        tools=["config", "logger"],
    )
    running = RunningApp(Kernel(root, environ={}, overrides=TEST_SETTINGS))
    with pytest.raises(TimeoutError):
        await running.start(timeout=0.05)
    apps = [t for t in asyncio.all_tasks() if t.get_name() == "microcore-test-app"]
    assert apps == []
    assert running.kernel.plugins == {} and not running.kernel.booted
    assert running.kernel.hook_timeout < START_TIMEOUT  # one hanging hook fails only itself


async def test_record_events_from_any_event_source(make_project: ProjectFactory) -> None:
    """Any bus that implements the EventSource contract is recorded through its tap."""
    running = await start_app(make_project({"tools/bus/bus_tool.py": FAKE_BUS}, tools=[]))
    try:
        recorder, remove = record_events(running.kernel)
        bus = running.kernel.tool("event_bus")  # FAKE_BUS: what tap() was given
        bus.callback("not really an event")  # type: ignore[attr-defined]
        seen: list[Any] = recorder.published
        assert seen == ["not really an event"]
        remove()
    finally:
        await running.stop()


async def test_record_events_needs_a_tap(make_project: ProjectFactory) -> None:
    """A bus that is no EventSource is refused with a message that says what is missing."""
    running = await start_app(make_project({"tools/bus/bus_tool.py": BUS_WITHOUT_TAP}, tools=[]))
    try:
        with pytest.raises(DependencyError, match=r"is no EventSource \(tap, history"):
            record_events(running.kernel)
    finally:
        await running.stop()


def test_make_event_needs_only_name_and_payload() -> None:
    """make_event fills id, correlation id, source and time; ids differ per event."""
    first, second = make_event("order.placed", {"n": 1}), make_event("order.placed", [2])
    assert (first.name, first.payload, first.source) == ("order.placed", {"n": 1}, "tests.Stub")
    assert first.correlation_id == first.id != second.id
    assert first.timestamp > 0 and first.parent_id is None
    child = make_event("x.y", None, source="shop.A", correlation_id="c", parent_id=first.id)
    assert (child.source, child.correlation_id, child.parent_id) == ("shop.A", "c", first.id)


async def test_events_requests_are_listed_apart_and_stubs_answer(events: EventRecorder) -> None:
    """A stubbed responder answers (a value, or what an async function returns); requests go
    to ``events.requests``, never ``events.published``."""

    async def double(event: Event) -> int:
        return int(event.payload["n"]) * 2

    await events.stub_responder("price.quote", 7)
    await events.stub_responder("price.double", double)
    assert await events.bus.request("price.quote", {}) == 7
    assert await events.bus.request("price.double", {"n": 4}) == 8
    assert [e.name for e in events.requests] == ["price.quote", "price.double"]
    assert "price.quote" not in events.names()


async def test_a_failing_handler_ends_in_the_dead_letter(events: EventRecorder) -> None:
    """The README's recipe: a test subscriber that fails is retried, then its dead letter
    ``_dlq.<name>`` is published with the attempts and the error, and recorded."""
    events.silence("order.placed")

    async def failing(event: Event) -> None:
        raise RuntimeError("mail server down")

    await events.subscribe("order.placed", failing, retries=2)
    await events.bus.publish("order.placed", {"id": 1})
    dead = await events.wait_for("_dlq.order.placed", timeout=5.0)
    assert dead.payload["attempts"] == 3 and "mail server down" in dead.payload["error"]
    assert dead.payload["event"]["payload"] == {"id": 1}


async def test_events_silence_and_subscribe_last_one_test(
    app: RunningApp, client: httpx.AsyncClient, events: EventRecorder
) -> None:
    """A silenced name reaches only the test's own handlers; close() restores the bus."""
    got: list[Event] = []
    arrived = anyio.Event()

    async def record(event: Event) -> None:
        got.append(event)
        arrived.set()

    events.silence("order.created")
    await events.subscribe("order.created", record)
    await client.post("/orders", json={})
    await events.wait_for("order.created")
    with anyio.fail_after(2):
        await arrived.wait()
    assert [e.name for e in got] == ["order.created"]
    await events.close()
    bus: Any = app.kernel.tool("event_bus")
    assert bus._router.fanout.silenced == {} and bus.contracts() == []


async def test_client_sse_reads_an_open_stream(client: TestClient) -> None:
    """client.sse sends query and headers, parses named events, and ends with EOFError."""
    async with client.sse("/ticks", params={"a": "1"}, headers={"X-Who": "me"}) as stream:
        assert stream.status_code == 200
        first = await stream.next()
        assert first.json() == {"n": 1, "who": "me", "q": {"a": "1"}}
        assert (first.event, first.id) == (None, None)
        rest = [message async for message in stream]
        assert [(m.event, m.id, m.retry, m.data) for m in rest] == [("tick", "2", 500, "two")]
        with pytest.raises(EOFError):
            await stream.next()
    assert "tick" in repr(rest[0])


def test_sse_parser_skips_comments() -> None:
    """A keep-alive comment is no event; multi-line data is joined."""
    assert _parse(": ping") is None
    message = _parse("data: a\ndata: b\n:note")
    assert isinstance(message, SseMessage) and message.data == "a\nb"


async def test_client_sse_without_response_or_in_time() -> None:
    """An app that answers nothing is an error; one that is slow to answer a TimeoutError."""

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(10)

    async with TestClient(silent) as http:
        with pytest.raises(RuntimeError, match="ended without a response"):
            async with http.sse("/x"):
                pass  # pragma: no cover - never entered
    async with TestClient(slow) as http:
        with pytest.raises(TimeoutError, match=r"no response head within 0\.05 s"):
            async with http.sse("/x", timeout=0.05):
                pass  # pragma: no cover - never entered


async def test_client_sse_stops_an_app_that_ignores_the_disconnect() -> None:
    """Leaving the block disconnects; an app that carries on is cancelled after ``timeout``."""

    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        body = b": keep-alive\n\ndata: 1\n\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})
        assert (await receive())["type"] == "http.request"
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        await anyio.sleep(10)

    async with TestClient(stubborn) as http:
        with anyio.fail_after(2):
            async with http.sse("/x", timeout=0.1) as stream:
                assert (await stream.next()).data == "1"


async def test_stubs_need_a_bus_that_can_silence(make_project: ProjectFactory) -> None:
    """A bus without ``silence`` (not microcore's) refuses stubs with a clear error."""
    running = await start_app(make_project({"tools/bus/bus_tool.py": FAKE_BUS}, tools=[]))
    try:
        recorder, remove = record_events(running.kernel)
        with pytest.raises(DependencyError, match="cannot silence handlers"):
            recorder.silence("x.y")
        remove()
    finally:
        await running.stop()


async def test_client_sse_raises_the_tests_own_error_as_is(client: TestClient) -> None:
    """An assertion failing inside the block comes out unwrapped (no exception group)."""
    with pytest.raises(AssertionError, match="mine"):
        async with client.sse("/ticks"):
            raise AssertionError("mine")


def test_client_types_are_public_and_typed() -> None:
    """``TestClient`` (what ``client`` is), ``SseStream`` and ``SseMessage`` import from
    ``microcore.testing`` (on first use: they need httpx), so a typed test can name them."""
    import microcore.testing as testing

    assert testing.TestClient.__mro__[1] is httpx.AsyncClient
    assert {"TestClient", "SseStream", "SseMessage", "EventRecorder"} <= set(testing.__all__)
    assert testing.SseStream.__name__ == "SseStream" and testing.SseMessage.__name__ == "SseMessage"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = testing.Nope
