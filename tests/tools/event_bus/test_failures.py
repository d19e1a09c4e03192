"""Failure isolation: logging, retries with backoff, dead letters, per-delivery deadlines."""

from __future__ import annotations

import anyio
import structlog

from microcore import Event
from microcore.tooling import causation
from tests.tools.event_bus.conftest import BusFactory, InboxFactory, PluginFactory


async def test_failing_handler_is_logged_and_isolated(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A raising handler is logged with event id and traceback; others and the publisher go on."""

    async def broken(event: Event) -> None:
        raise ValueError("bad data")

    async with new_bus() as bus:
        healthy = inbox()
        await make_plugin(bus, "shop.Broken").subscribe("a.b", broken)
        await make_plugin(bus, "shop.Healthy").subscribe("a.b", healthy)
        with structlog.testing.capture_logs() as logs:
            event_id = await make_plugin(bus).publish("a.b", {})
            await healthy.wait(1)
            dead = inbox()
            await make_plugin(bus, "ops.Dlq").subscribe("_dlq.>", dead)
            await make_plugin(bus).publish("a.b", {})
            await dead.wait(1)
    failure = next(e for e in logs if e["event"] == "event_handler_failed")
    assert failure["event_id"] == event_id
    assert failure["subscriber"] == "shop.Broken"
    assert isinstance(failure["exc_info"], ValueError)
    assert failure["log_level"] == "error"


async def test_retries_then_success_delivers_once(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A handler that fails twice and then succeeds with retries=2 is not dead-lettered."""
    calls: list[str] = []
    done = anyio.Event()

    async def flaky(event: Event) -> None:
        calls.append(event.id)
        if len(calls) < 3:
            raise RuntimeError("transient")
        done.set()

    async with new_bus(EVENT_BUS_RETRY_BACKOFF=0.001) as bus:
        await make_plugin(bus, "shop.Flaky").subscribe("a.b", flaky, retries=2)
        event_id = await make_plugin(bus).publish("a.b", {})
        with anyio.fail_after(5):
            await done.wait()
        assert calls == [event_id] * 3
        assert not [e for e in bus.history() if e.name.startswith("_dlq.")]
        (row,) = bus.subscriptions()
        assert (row.delivered, row.failed) == (1, 0)


async def test_retries_back_off_exponentially_from_a_tenth_of_a_second(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """Default backoff: 0.1 s then 0.2 s between three attempts (>= 0.3 s in total)."""
    times: list[float] = []
    done = anyio.Event()

    async def failing(event: Event) -> None:
        times.append(anyio.current_time())
        if len(times) == 3:
            done.set()
        raise RuntimeError("always")

    # logs captured: rendering each failure's traceback to the console would add to the gaps
    with structlog.testing.capture_logs():
        async with new_bus() as bus:
            await make_plugin(bus, "shop.F").subscribe("a.b", failing, retries=2)
            await make_plugin(bus).publish("a.b", {})
            with anyio.fail_after(5):
                await done.wait()
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert 0.1 <= first_gap < 0.19
    assert 0.2 <= second_gap < 0.35


async def test_exhausted_retries_publish_a_dead_letter(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """After retries the event goes to _dlq.<name> with event, error, attempts, subscriber."""

    async def failing(event: Event) -> None:
        raise KeyError("sku")

    async with new_bus(EVENT_BUS_RETRY_BACKOFF=0.001) as bus:
        dead = inbox()
        await make_plugin(bus, "ops.Dlq").subscribe("_dlq.>", dead)
        await make_plugin(bus, "shop.F").subscribe("order.paid", failing, retries=1)
        with causation("corr-1"):
            event_id = await make_plugin(bus, "shop.Pay").publish("order.paid", {"id": 9})
        (letter,) = await dead.wait(1)
    assert letter.name == "_dlq.order.paid"
    assert letter.payload["attempts"] == 2
    assert letter.payload["subscriber"] == "shop.F"
    assert letter.payload["error"] == "KeyError: 'sku'"
    original = letter.payload["event"]
    assert (original["id"], original["name"], original["payload"]) == (
        event_id,
        "order.paid",
        {"id": 9},
    )
    assert original["source"] == "shop.Pay"
    assert letter.correlation_id == "corr-1"
    assert letter.parent_id == event_id


async def test_failing_dead_letter_handler_does_not_loop(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A handler failing on a dead letter does not produce _dlq._dlq.* events."""

    async def failing(event: Event) -> None:
        raise RuntimeError("always")

    async with new_bus() as bus:
        await make_plugin(bus, "ops.Fails").subscribe(">", failing)
        seen = inbox()
        await make_plugin(bus, "ops.Sees").subscribe(">", seen)
        with structlog.testing.capture_logs() as logs:
            await make_plugin(bus).publish("a.b", {})
            await seen.wait(2)
            await anyio.lowlevel.checkpoint()
            with anyio.fail_after(5):
                while not any(e["event"] == "dead_letter_not_requeued" for e in logs):
                    await anyio.lowlevel.checkpoint()
    assert [e.name for e in seen.events] == ["a.b", "_dlq.a.b"]


async def test_hanging_handler_is_cut_off_and_does_not_block_others(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A handler past EVENT_BUS_DELIVERY_TIMEOUT is cancelled, dead-lettered; the rest flows."""
    calls: list[int] = []

    async def sometimes_hangs(event: Event) -> None:
        calls.append(event.payload["n"])
        if event.payload["n"] == 1:
            await anyio.sleep_forever()

    async with new_bus(EVENT_BUS_DELIVERY_TIMEOUT=0.05) as bus:
        fast, dead = inbox(), inbox()
        await make_plugin(bus, "shop.Slow").subscribe("a.b", sometimes_hangs)
        await make_plugin(bus, "shop.Fast").subscribe("a.b", fast)
        await make_plugin(bus, "ops.Dlq").subscribe("_dlq.>", dead)
        publisher = make_plugin(bus)
        for n in (1, 2, 3):
            await publisher.publish("a.b", {"n": n})
        await fast.wait(3)  # not held up by the hung handler
        (letter,) = await dead.wait(1)
        assert letter.payload["error"].startswith("DeliveryTimeout")
        assert letter.payload["event"]["payload"] == {"n": 1}
        with anyio.fail_after(5):
            while calls != [1, 2, 3]:
                await anyio.lowlevel.checkpoint()


async def test_timed_out_attempt_is_retried_once_per_retry(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A cut-off attempt counts as a failure: retried, never re-run beyond its retries."""
    calls: list[str] = []

    async def hangs_first(event: Event) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            await anyio.sleep_forever()

    async with new_bus(EVENT_BUS_DELIVERY_TIMEOUT=0.05, EVENT_BUS_RETRY_BACKOFF=0.001) as bus:
        await make_plugin(bus, "shop.H").subscribe("a.b", hangs_first, retries=1)
        event_id = await make_plugin(bus).publish("a.b", {})
        with anyio.fail_after(5):
            while len(calls) < 2:
                await anyio.lowlevel.checkpoint()
        (row,) = bus.subscriptions()
        assert (row.delivered, row.failed) == (1, 0)
    assert calls == [event_id, event_id]


async def test_handler_swallowing_cancellation_does_not_blame_the_next_event(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A handler that swallows the deadline's cancellation finishes; the next event is fine."""
    done: list[int] = []

    async def stubborn(event: Event) -> None:
        if event.payload["n"] == 1:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                pass  # misbehaving on purpose
        done.append(event.payload["n"])

    async with new_bus(EVENT_BUS_DELIVERY_TIMEOUT=0.05) as bus:
        await make_plugin(bus, "shop.S").subscribe("a.b", stubborn)
        publisher = make_plugin(bus)
        await publisher.publish("a.b", {"n": 1})
        await publisher.publish("a.b", {"n": 2})
        with anyio.fail_after(5):
            while len(done) < 2:
                await anyio.lowlevel.checkpoint()
        (row,) = bus.subscriptions()
        assert (row.delivered, row.failed) == (2, 0)
    assert done == [1, 2]
