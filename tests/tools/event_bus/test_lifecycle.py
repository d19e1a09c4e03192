"""Lifecycle: settings, drain on shutdown, unloading plugins with deliveries in flight."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import structlog

from microcore import Event
from microcore.tooling import ConfigurationError
from tests.support import FakeKernel
from tests.tools.event_bus.conftest import (
    BusFactory,
    InboxFactory,
    PluginFactory,
    Until,
)
from tools.config.config_tool import ConfigTool
from tools.event_bus import BusClosed
from tools.event_bus.event_bus_tool import EventBusTool


class _Kernel(FakeKernel):
    def start_background(self, fn: Any, *args: Any, name: str | None = None) -> None:
        raise RuntimeError("not running")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"EVENT_BUS_URL": "nats://x", "EVENT_BUS_STREAM": "a.b"}, "EVENT_BUS_STREAM"),
        ({"EVENT_BUS_ACK_WAIT": "0"}, "EVENT_BUS_ACK_WAIT"),
        ({"EVENT_BUS_URL": "kafka://x"}, "unknown scheme"),
        ({"EVENT_BUS_BUFFER": "0"}, "EVENT_BUS_BUFFER must be greater than 0"),
        ({"EVENT_BUS_DELIVERY_TIMEOUT": "-1"}, "EVENT_BUS_DELIVERY_TIMEOUT"),
        ({"EVENT_BUS_HISTORY": "-1"}, "EVENT_BUS_HISTORY"),
        ({"EVENT_BUS_BUFFER": "many"}, "must be an integer"),
    ],
)
async def test_setup_refuses_bad_settings(settings: dict[str, str], message: str) -> None:
    """Unknown bus URLs and out-of-range numbers fail setup with a message naming the key."""
    kernel = _Kernel(settings)
    bus = EventBusTool(ConfigTool(kernel), kernel)
    with pytest.raises(ConfigurationError, match=message):
        await bus.setup()


async def test_publish_before_setup_is_refused() -> None:
    """A bus that is not set up says so instead of failing obscurely."""
    kernel = _Kernel({})
    bus = EventBusTool(ConfigTool(kernel), kernel)
    with pytest.raises(BusClosed, match="not set up"):
        await bus._router.publish("a.b", {}, "x")


async def test_drain_delivers_queued_events_and_their_consequences(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """Drain lets queued events and the events their handlers publish finish, then closes."""
    handled: list[str] = []
    async with new_memory_bus() as bus:
        relay = make_plugin(bus, "shop.Relay")

        async def first(event: Event) -> None:
            await anyio.lowlevel.checkpoint()
            handled.append(event.name)
            await relay.publish("b.second", {})

        async def second(event: Event) -> None:
            handled.append(event.name)

        await relay.subscribe("a.first", first)
        await make_plugin(bus, "shop.End").subscribe("b.second", second)
        publisher = make_plugin(bus)
        for _ in range(20):
            await publisher.publish("a.first", {})
        await bus.drain()
        assert handled.count("a.first") == 20
        assert handled.count("b.second") == 20
        assert {row.state for row in bus.subscriptions()} == {"closed"}
        with pytest.raises(BusClosed, match="shutting down"):
            await publisher.publish("a.first", {})


async def test_drain_past_its_deadline_logs_what_was_not_delivered(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A hung handler cannot stall shutdown: drain cancels it and logs undelivered event ids."""

    async def hang(event: Event) -> None:
        await anyio.sleep_forever()

    async with new_memory_bus(EVENT_BUS_DRAIN_TIMEOUT=0.05) as bus:
        await make_plugin(bus, "shop.Hung").subscribe("a.b", hang)
        publisher = make_plugin(bus)
        ids = [await publisher.publish("a.b", {}) for _ in range(3)]
        with structlog.testing.capture_logs() as logs, anyio.fail_after(2):
            await bus.drain()
    undelivered = next(e for e in logs if e["event"] == "events_undelivered")
    assert undelivered["subscriber"] == "shop.Hung"
    assert undelivered["count"] == 3
    assert undelivered["event_ids"] == ids
    assert any(e["event"] == "event_bus_drain_timeout" for e in logs)


async def test_unload_lets_the_in_flight_delivery_finish_once(
    new_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """Releasing a plugin mid-handler waits for that handler; it is not cancelled or re-run."""
    started, finish = anyio.Event(), anyio.Event()
    calls: list[str] = []

    async def handler(event: Event) -> None:
        calls.append("start")
        started.set()
        await finish.wait()
        calls.append("end")

    async with new_bus() as bus:
        handle = make_plugin(bus, "shop.P")
        await handle.subscribe("a.b", handler)
        await make_plugin(bus).publish("a.b", {})
        with anyio.fail_after(5):
            await started.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle._owner.release)
            await anyio.lowlevel.checkpoint()
            assert bus.subscriptions()[0].state == "closing"
            finish.set()
        assert bus.subscriptions() == []
    assert calls == ["start", "end"]


async def test_unload_past_grace_cancels_cleanly_and_logs(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A handler that outlives the grace period is cancelled once and reported, not retried."""
    calls: list[str] = []

    async def hang(event: Event) -> None:
        calls.append(event.id)
        await anyio.sleep_forever()

    async with new_memory_bus(EVENT_BUS_DRAIN_TIMEOUT=0.05) as bus:
        handle = make_plugin(bus, "shop.P")
        await handle.subscribe("a.b", hang, retries=3)
        publisher = make_plugin(bus)
        first = await publisher.publish("a.b", {})
        second = await publisher.publish("a.b", {})
        with structlog.testing.capture_logs() as logs, anyio.fail_after(2):
            await handle._owner.release()
    assert calls == [first]
    undelivered = next(e for e in logs if e["event"] == "events_undelivered")
    assert undelivered["event_ids"] == [first, second]


async def test_unsubscribe_from_inside_its_own_handler_does_not_deadlock(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A handler may unsubscribe itself; later events are not delivered to it."""
    seen: list[int] = []
    async with new_bus() as bus:
        handle = make_plugin(bus, "shop.Once")

        async def once(event: Event) -> None:
            seen.append(event.payload["n"])
            await handle.unsubscribe("a.b", once)

        await handle.subscribe("a.b", once)
        publisher = make_plugin(bus)
        await publisher.publish("a.b", {"n": 1})
        with anyio.fail_after(2):
            while bus.subscriptions():
                await anyio.lowlevel.checkpoint()
        await publisher.publish("a.b", {"n": 2})
    assert seen == [1]


async def test_shutdown_without_drain_still_closes_everything(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """shutdown() drains if drain() was not called; a second drain is a no-op."""
    async with new_memory_bus() as bus:
        box = inbox()
        await make_plugin(bus, "a.B").subscribe("a.b", box)
        await make_plugin(bus).publish("a.b", {})
        await bus.shutdown()
        await bus.drain()
        assert len(box.events) == 1
        assert bus.subscriptions()[0].state == "closed"
