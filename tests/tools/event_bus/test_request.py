"""Request/reply: first reply wins, NoResponder at once, RequestTimeout, waiter cleanup."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from microcore import Event
from microcore.tooling import NoResponder, RequestTimeout, causation
from tests.tools.event_bus.conftest import (
    BusFactory,
    InboxFactory,
    PluginFactory,
    Until,
    backend_of,
)
from tools.event_bus import RequestFailed


async def test_request_returns_the_responders_reply(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """The reply is the responder's return value; the request event carries the requester."""
    seen = []

    async def quote(event: Event) -> Any:
        seen.append(event)
        return {"price": event.payload["qty"] * 2}

    async with new_bus() as bus:
        await make_plugin(bus, "shop.Pricing").subscribe("price.quote", quote)
        with causation("corr-7"):
            reply = await make_plugin(bus, "shop.Cart").request("price.quote", {"qty": 3})
    assert reply == {"price": 6}
    assert seen[0].source == "shop.Cart"
    assert seen[0].correlation_id == "corr-7"


async def test_request_without_subscriber_raises_no_responder_at_once(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """Nothing subscribed: NoResponder immediately, not after the timeout."""
    async with new_bus() as bus:
        with anyio.fail_after(1), pytest.raises(NoResponder, match=r"price\.quote"):
            await make_plugin(bus).request("price.quote", {}, timeout=30)
        assert backend_of(bus).waiting == set()


async def test_request_times_out_with_request_timeout(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """No reply within the timeout: RequestTimeout, which is a TimeoutError; waiter removed."""

    async def never(event: Event) -> None:
        await anyio.sleep_forever()

    async with new_bus(EVENT_BUS_DRAIN_TIMEOUT=0.05) as bus:
        await make_plugin(bus, "shop.Slow").subscribe("price.quote", never)
        started = anyio.current_time()
        with pytest.raises(RequestTimeout) as info:
            await make_plugin(bus).request("price.quote", {}, timeout=0.05)
        assert 0.05 <= anyio.current_time() - started < 1
        assert isinstance(info.value, TimeoutError)
        assert info.value.http_status == 504
        assert backend_of(bus).waiting == set()


async def test_cancelled_request_cleans_up_its_waiter(
    new_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """A requester cancelled mid-wait leaves no waiter; the late reply is ignored."""
    release = anyio.Event()
    answered = anyio.Event()

    async def slow(event: Event) -> Any:
        await release.wait()
        answered.set()
        return {"late": True}

    async with new_bus() as bus:
        await make_plugin(bus, "shop.Slow").subscribe("q.slow", slow)
        client = make_plugin(bus)
        with anyio.move_on_after(0.02):
            await client.request("q.slow", {}, timeout=10)
        assert backend_of(bus).waiting == set()
        release.set()
        with anyio.fail_after(5):
            await answered.wait()
        await until(lambda: bus.subscriptions()[0].delivered == 1)  # late reply: no error


async def test_first_reply_wins(new_bus: BusFactory, make_plugin: PluginFactory) -> None:
    """With two responders, the faster one's reply is returned."""
    gate = anyio.Event()

    async def slow(event: Event) -> Any:
        await gate.wait()
        return "slow"

    async def fast(event: Event) -> Any:
        return "fast"

    async with new_bus() as bus:
        await make_plugin(bus, "a.Slow").subscribe("q.x", slow)
        await make_plugin(bus, "a.Fast").subscribe("q.*", fast)
        assert await make_plugin(bus).request("q.x", {}) == "fast"
        gate.set()
        assert bus.flows().responders == {"q.x": ["a.Fast"]}


async def test_observer_returning_none_does_not_win(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A subscriber that returns None (an observer) does not answer a request."""
    gate = anyio.Event()

    async def observer(event: Event) -> None:
        return None

    async def responder(event: Event) -> Any:
        await gate.wait()
        return 42

    async with new_bus() as bus:
        await make_plugin(bus, "a.Audit").subscribe(">", observer)
        await make_plugin(bus, "a.Answer").subscribe("q.x", responder)
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                assert await make_plugin(bus).request("q.x", {}) == 42

            tg.start_soon(ask)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            gate.set()


async def test_request_answered_by_nobody_returns_none(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """When every responder finished without a value, request returns None at once."""

    async def observer(event: Event) -> None:
        return None

    async with new_bus() as bus:
        await make_plugin(bus, "a.Audit").subscribe("q.x", observer)
        with anyio.fail_after(1):
            assert await make_plugin(bus).request("q.x", {}, timeout=30) is None


async def test_request_where_every_responder_fails_raises_request_failed(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """All responders failed (after retries): RequestFailed naming the error, at once."""

    async def broken(event: Event) -> None:
        raise LookupError("no such sku")

    async with new_bus(EVENT_BUS_RETRY_BACKOFF=0.001) as bus:
        await make_plugin(bus, "a.Broken").subscribe("q.x", broken, retries=1)
        with anyio.fail_after(1), pytest.raises(RequestFailed, match="no such sku"):
            await make_plugin(bus).request("q.x", {}, timeout=30)


async def test_responder_can_request_and_publish_in_the_same_chain(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A responder's own request and publish carry the requester's correlation id."""
    async with new_bus() as bus:
        inner = make_plugin(bus, "a.Outer")

        async def stock(event: Event) -> Any:
            return {"in_stock": True}

        async def quote(event: Event) -> Any:
            found = await inner.request("stock.check", {})
            await inner.publish("quote.made", {})
            return {"quote": 1, **found}

        await make_plugin(bus, "a.Stock").subscribe("stock.check", stock)
        await inner.subscribe("price.quote", quote)
        box = inbox()
        await make_plugin(bus, "a.Log").subscribe("quote.made", box)
        with causation("corr-x"):
            assert await make_plugin(bus).request("price.quote", {}) == {
                "quote": 1,
                "in_stock": True,
            }
        (made,) = await box.wait(1)
        assert made.correlation_id == "corr-x"
        assert {e.correlation_id for e in bus.history()} == {"corr-x"}
