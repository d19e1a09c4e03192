"""Interleavings of the NATS driver, forced with gates: each test holds the driver at a
real await point (a NATS round trip) with an event, does what a plugin or the kernel
would do meanwhile, then lets it go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from nats.aio.subscription import Subscription as NatsSubscription

from microcore import Event
from microcore.tooling import NoResponder
from tests.support import eventually
from tests.tools.event_bus.conftest import (
    BusFactory,
    InboxFactory,
    PluginFactory,
    nats_backend_of,
    subscription_of,
)


class Gate:
    """Holds the first ``count`` calls of an async function until released."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.reached = anyio.Event()
        self.go = anyio.Event()

    async def passing(self) -> None:
        if self.count > 0:
            self.count -= 1
            self.reached.set()
            await self.go.wait()


async def test_nats_hot_reload_while_the_old_binding_is_left_keeps_the_plugins_events(
    nats_bus: BusFactory,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plugin hot-reloaded while its subscription is still being joined on NATS (the old
    version unsubscribes before the join finished, the new version subscribes while the
    driver leaves again) gets its events on this replica: the new version binds afresh
    instead of reusing the binding being left."""
    async with nats_bus(EVENT_BUS_DRAIN_TIMEOUT=1) as bus:
        driver = nats_backend_of(bus)
        joined, leaving = Gate(), Gate()
        real_subscribe = driver._subscribe
        real_drain: Callable[[Any], Awaitable[None]] = NatsSubscription.drain

        async def subscribe(binding: Any) -> None:
            await real_subscribe(binding)
            await joined.passing()  # the consumer exists and both groups are joined

        async def drain(self: Any) -> None:
            await leaving.passing()
            await real_drain(self)

        monkeypatch.setattr(driver, "_subscribe", subscribe)
        monkeypatch.setattr(NatsSubscription, "drain", drain)

        old_box, new_box = inbox(), inbox()
        old = make_plugin(bus, "shop.Mailer")
        await old.subscribe("order.paid", old_box)
        with anyio.fail_after(5):
            await joined.reached.wait()
        # Hot reload, old version first: it unsubscribes before the join returned.
        await old.unsubscribe("order.paid", old_box)
        joined.go.set()
        with anyio.fail_after(5):
            await leaving.reached.wait()  # the driver saw nobody uses it and is leaving
        # The new version subscribes while that leave is in progress.
        new = make_plugin(bus, "shop.Mailer")
        await new.subscribe("order.paid", new_box)
        leaving.go.set()
        await bus.on_boot_complete()
        await eventually(lambda: not driver._leaving)
        await make_plugin(bus, "shop.Cart").publish("order.paid", {"n": 1})
        await new_box.wait(1, timeout=3)
    assert old_box.events == []


async def test_nats_request_reaching_a_leaving_replica_is_answered_by_a_live_one(
    nats_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica A unsubscribes its responder while replica B keeps one: until NATS has A's
    UNSUB, the queue group may still pick A, which can no longer answer. The requester
    asks again and gets B's answer instead of NoResponder.

    The gate holds A's leave before its first drain, so A stays in the request queue
    group: the window every unsubscribe and rolling restart has. NATS picks a queue
    member at random, so some of the 40 requests reach A (all missing it: 2**-40)."""
    leaving = Gate()
    real_drain: Callable[[Any], Awaitable[None]] = NatsSubscription.drain

    async def drain(self: Any) -> None:
        await leaving.passing()
        await real_drain(self)

    async def quote(event: Event) -> Any:
        return {"price": 8}

    async with nats_bus() as a, nats_bus() as b:
        monkeypatch.setattr(NatsSubscription, "drain", drain)
        try:
            pricing_a = make_plugin(a, "shop.Pricing")
            await pricing_a.subscribe("price.quote", quote)
            await make_plugin(b, "shop.Pricing").subscribe("price.quote", quote)
            await a.on_boot_complete()
            await b.on_boot_complete()
            await pricing_a.unsubscribe("price.quote", quote)  # A leaves; B stays
            with anyio.fail_after(5):
                await leaving.reached.wait()
            client = make_plugin(b, "shop.Cart")
            outcomes = []
            for _ in range(40):
                try:
                    outcomes.append(await client.request("price.quote", {}, timeout=5))
                except NoResponder as exc:
                    outcomes.append(exc)
            assert outcomes == [{"price": 8}] * 40
        finally:
            leaving.go.set()


async def test_nats_events_waiting_behind_a_full_buffer_are_handled_once(
    nats_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """Events that reached a replica while its subscription's buffer is full wait there,
    in order, and are kept alive (in-progress acks) however long they wait: JetStream
    does not redeliver them after EVENT_BUS_ACK_WAIT, so each is handled once."""
    go = anyio.Event()
    runs: list[str] = []
    answers: list[object] = []
    ack_wait = 0.6

    async def worker(event: Event) -> Any:
        if event.name == "job.ask":
            await go.wait()
            return "ok"
        runs.append(event.id)
        return None

    settings = {
        "EVENT_BUS_BUFFER": 2,
        "EVENT_BUS_ACK_WAIT": ack_wait,
        "EVENT_BUS_PUBLISH_TIMEOUT": 30,
    }
    async with nats_bus(**settings) as bus:
        await make_plugin(bus, "shop.Worker").subscribe("job.>", worker)
        await bus.on_boot_complete()
        sub = subscription_of(bus, "shop.Worker", "job.>")
        acks = nats_backend_of(bus).acks
        client = make_plugin(bus, "shop.Boss")

        async def ask() -> None:
            answers.append(await client.request("job.ask", {}, timeout=30))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(ask)
            await eventually(lambda: sub.since > 0 and sub.queued == 2)  # one in hand, full
            e1 = await client.publish("job.run", {"n": 1})
            e2 = await client.publish("job.run", {"n": 2})
            # e1 waits for room (held), e2 waits behind it (arrived, not held yet)
            await eventually(lambda: len(acks.held) == 1 and len(acks.waiting) == 1)
            # Past the ack wait: a copy JetStream redelivered would arrive here as well.
            with anyio.move_on_after(ack_wait * 3):
                await eventually(lambda: len(acks.held) + len(acks.waiting) > 2)
            go.set()
        await eventually(lambda: len(runs) >= 2 and not acks.held and not acks.waiting)
        await anyio.sleep(0.2)  # room for a duplicate to show up (there must be none)
    assert answers == ["ok"] * 3
    assert runs == [e1, e2]
