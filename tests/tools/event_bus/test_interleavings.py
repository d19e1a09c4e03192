"""Interleavings found by review: each test forces one, deterministically, and pins that
the bus neither double-counts, nor waits in vain, nor lets drivers disagree."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

from microcore import Event
from tests.tools.event_bus.conftest import BusFactory, PluginFactory, Until, subscription_of


async def test_responder_unloaded_while_dead_lettering_is_not_counted_twice(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """A responder that failed and is unloaded while its dead letter waits for room counts
    as one failed responder, not two: the request still gets the other responder's answer."""
    c_go = anyio.Event()
    b_go = anyio.Event()
    outcome: list[object] = []

    async def dlq_consumer(event: Event) -> None:
        await c_go.wait()

    async def failing(event: Event) -> None:
        raise ValueError("A cannot answer")

    async def answering(event: Event) -> Any:
        await b_go.wait()
        return "from-B"

    async with new_memory_bus(
        EVENT_BUS_BUFFER=1, EVENT_BUS_DRAIN_TIMEOUT=0.2, EVENT_BUS_PUBLISH_TIMEOUT=30
    ) as bus:
        c = make_plugin(bus, "t.C")
        a = make_plugin(bus, "t.A")
        b = make_plugin(bus, "t.B")
        client = make_plugin(bus, "t.Client")
        await c.subscribe("_dlq.>", dlq_consumer)
        await a.subscribe("q.x", failing)
        await b.subscribe("q.x", answering)
        # C busy with one dead letter and one more queued: its buffer (1) is full.
        await client.publish("_dlq.fill.one", {})
        await until(lambda: subscription_of(bus, "t.C", "_dlq.>").since > 0)
        await client.publish("_dlq.fill.two", {})

        async def ask() -> None:
            try:
                outcome.append(await client.request("q.x", {}, timeout=10))
            except Exception as exc:  # noqa: BLE001
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            # A failed and now waits for room to dead-letter the request.
            await until(lambda: subscription_of(bus, "t.A", "q.x").failed == 1)
            await until(lambda: subscription_of(bus, "t.C", "_dlq.>").room is not None)
            # Unsubscribe A: past the grace period its consumer is cancelled mid dead-letter.
            await a.unsubscribe("q.x", failing)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert not outcome, (
                f"request ended before responder B answered: {outcome!r} "
                "(A's failure was counted twice)"
            )
            b_go.set()
            c_go.set()
        assert outcome == ["from-B"]


async def test_drain_notices_outstanding_reaching_zero_through_a_refused_publisher(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """When the last outstanding event is one a waiting publisher could not queue (its
    subscription closed), drain notices at once instead of waiting out its deadline."""
    go = anyio.Event()
    first = True

    async def handler(event: Event) -> None:
        nonlocal first
        if first:
            first = False
            await go.wait()

    async with new_memory_bus(EVENT_BUS_BUFFER=1, EVENT_BUS_DRAIN_TIMEOUT=10) as bus:
        s = make_plugin(bus, "t.S")
        p = make_plugin(bus, "t.P")
        await s.subscribe("x", handler)
        sub = subscription_of(bus, "t.S", "x")
        await p.publish("x", {"n": 0})
        await until(lambda: sub.since > 0)  # handling e0
        await p.publish("x", {"n": 1})  # buffer full
        drained = anyio.Event()

        async def publish_blocked() -> None:
            await p.publish("x", {"n": 2})

        async def drain() -> None:
            await bus.drain()
            drained.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_blocked)
            await until(lambda: sub.room is not None)
            tg.start_soon(drain)
            await until(lambda: bus._router.fanout.idle is not None)
            assert bus._router.fanout.outstanding == 3
            go.set()  # the consumer runs first: settles e0, takes e1 (wakes the publisher) ...
            tg.start_soon(s.unsubscribe, "x", handler)  # ... then the subscription closes
            with anyio.move_on_after(3):
                await drained.wait()
            assert bus._router.fanout.outstanding == 0
            assert drained.is_set(), "drain kept waiting with nothing outstanding"


async def test_busy_responder_does_not_lose_to_an_observer_returning_none(
    new_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """An observer (``q.>``) returning None never wins over a busy responder, on every
    driver: on NATS a request waiting for room in one subscription's buffer does not hold
    up the claims of the requests behind it (the requester would otherwise settle for the
    observer's None after the claim grace)."""
    go = anyio.Event()
    seen_by_observer: list[str] = []
    results: dict[int, object] = {}
    done = {i: anyio.Event() for i in range(4)}

    async def observer(event: Event) -> None:
        seen_by_observer.append(event.payload["n"])
        return None

    async def responder(event: Event) -> Any:
        await go.wait()
        return f"R{event.payload['n']}"

    async with new_bus(EVENT_BUS_BUFFER=1, EVENT_BUS_PUBLISH_TIMEOUT=30) as bus:
        await make_plugin(bus, "t.Observer").subscribe("q.>", observer)
        await make_plugin(bus, "t.Responder").subscribe("q.x", responder)
        client = make_plugin(bus, "t.Client")
        r_sub = subscription_of(bus, "t.Responder", "q.x")

        async def ask(n: int) -> None:
            try:
                results[n] = await client.request("q.x", {"n": n}, timeout=30)
            except Exception as exc:  # noqa: BLE001
                results[n] = exc
            done[n].set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, 0)
            await until(lambda: r_sub.since > 0)  # the responder is busy with request 0
            tg.start_soon(ask, 1)
            await until(lambda: r_sub.queued == 1)  # request 1 fills its buffer
            tg.start_soon(ask, 2)
            await until(lambda: r_sub.room is not None)  # request 2 waits for room
            tg.start_soon(ask, 3)
            with anyio.move_on_after(0.5):  # 5x the claim grace after which a NONE would win
                await done[3].wait()
            early = dict(results)
            go.set()
        assert early == {}, f"requests ended while the responder was busy: {early!r}"
        assert results == {0: "R0", 1: "R1", 2: "R2", 3: "R3"}
