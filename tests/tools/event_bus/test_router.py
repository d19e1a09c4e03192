"""The router's edges: backend choice, consumers it cannot start, dead letters it cannot send."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest
import structlog

from microcore import Event
from microcore.tooling import ConfigurationError, Owner
from tests.support import FakeKernel
from tests.tools.event_bus.conftest import BusFactory, PluginFactory
from tools.config.config_tool import ConfigTool
from tools.event_bus import SubscriptionState
from tools.event_bus._history import Graph, History
from tools.event_bus.event_bus_tool import EventBusTool
from tools.event_bus.memory import MemoryBackend, Waiter


class _NoTasks(FakeKernel):
    def start_background(self, fn: Any, *args: Any, name: str | None = None) -> None:
        raise RuntimeError("no background tasks here")


async def handler(event: Event) -> None:
    return None


def _event(event_id: str) -> Event:
    return Event(
        name="a.b", payload={}, id=event_id, correlation_id=event_id, source="t", timestamp=0.0
    )


async def test_backend_for_nats_without_nats_py_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EVENT_BUS_URL=nats://… without nats-py installed fails setup with the pip command."""
    for name in [m for m in sys.modules if m.startswith("tools.event_bus.nats")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nats", None)
    kernel = FakeKernel({"EVENT_BUS_URL": "nats://127.0.0.1:4222"})
    bus = EventBusTool(ConfigTool(kernel), kernel)
    with pytest.raises(ConfigurationError, match=r"pip install 'microcore\[nats\]'"):
        await bus.setup()


async def test_router_subscription_that_cannot_start_is_closed_and_the_error_raised() -> None:
    """A consumer task the kernel refuses to start leaves no open subscription behind."""
    kernel = _NoTasks({})
    bus = EventBusTool(ConfigTool(kernel), kernel)
    await bus.setup()
    owner = Owner("shop.A")
    owner.activate()
    with pytest.raises(RuntimeError, match="no background tasks"):
        await bus.bind(owner).subscribe("a.b", handler)
    assert [s.state for s in bus.subscriptions()] == [SubscriptionState.CLOSING]
    assert bus.flows().subscribers == {}


async def test_router_subscription_made_after_drain_never_opens(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """Subscribing once the bus drained records the subscription as closed, not receiving."""
    async with new_memory_bus() as bus:
        await bus.drain()
        await make_plugin(bus, "shop.Late").subscribe("a.b", handler)
        assert [s.state for s in bus.subscriptions()] == [SubscriptionState.CLOSED]


async def test_router_plugins_changed_leaves_pending_and_open_subscriptions_alone(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A booting plugin stays pending and an active one stays active across plugins_changed."""
    async with new_memory_bus() as bus:
        await make_plugin(bus, "shop.Booting", active=False).subscribe("a.b", handler)
        await make_plugin(bus, "shop.Serving").subscribe("a.b", handler)
        bus.on_plugins_changed()
        states = {s.subscriber: s.state for s in bus.subscriptions()}
        assert states == {
            "shop.Booting": SubscriptionState.PENDING,
            "shop.Serving": SubscriptionState.ACTIVE,
        }
        assert bus.flows().subscribers == {"a.b": ["shop.Serving"]}


async def test_router_dead_letter_that_cannot_be_published_is_logged(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When publishing the dead letter fails, the failure is logged and the consumer goes on."""
    failed = anyio.Event()

    async def broken(event: Event) -> None:
        raise ValueError("nope")

    async with new_memory_bus() as bus:
        router = bus._router
        send = router._send

        async def refuse_dead_letters(event: Event) -> object:
            if event.name.startswith("_dlq."):
                failed.set()
                raise RuntimeError("store down")
            return await send(event)

        monkeypatch.setattr(router, "_send", refuse_dead_letters)
        await make_plugin(bus, "shop.Broken").subscribe("a.b", broken)
        with structlog.testing.capture_logs() as logs:
            await make_plugin(bus).publish("a.b", {})
            with anyio.fail_after(5):
                await failed.wait()
                while not any(e["event"] == "dead_letter_failed" for e in logs):
                    await anyio.lowlevel.checkpoint()
        assert [o.failed for o in bus.outcomes()] == [1]


async def test_memory_backend_refuses_use_before_open() -> None:
    """The memory backend says it is not open instead of failing obscurely."""
    backend = MemoryBackend()
    with pytest.raises(RuntimeError, match="not open"):
        backend.publisher()
    with pytest.raises(RuntimeError, match="not open"):
        await backend.request(_event("1"), 1.0)


def test_memory_waiter_is_open_until_answered() -> None:
    """A waiter takes answers until the first non-None one."""
    waiter = Waiter()
    assert waiter.open
    assert not waiter.answer(None, "shop.A")
    assert waiter.answer(7, "shop.B")
    assert not waiter.open


def test_history_and_graph_bound_what_they_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    """History is a ring of the last N events; a publisher's names stop growing at the cap."""
    history = History(2)
    for n in range(3):
        history.append(_event(str(n)))
    assert len(history) == 2
    monkeypatch.setattr("tools.event_bus._history._NAMES_PER_PUBLISHER", 1)
    names = Graph().published_by("shop.A")
    Graph.note(names, "a.b")
    Graph.note(names, "a.c")
    assert names == {"a.b"}


def test_handle_repr_names_its_plugin() -> None:
    """An EventBus handle shows which plugin it belongs to."""
    kernel = FakeKernel({})
    bus = EventBusTool(ConfigTool(kernel), kernel)
    assert repr(bus.bind(Owner("shop.A"))) == "<EventBus of shop.A>"
