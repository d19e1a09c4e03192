"""Publish and subscribe: delivery, order, payloads, ownership, observation."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from microcore import Event
from microcore.tooling import HookError, MicroCoreError, Owner, RegistrationError, causation
from tests.tools.event_bus.conftest import BusFactory, InboxFactory, PluginFactory, Until
from tools.event_bus import DeliveryOutcome, PublishTimeout


class Price(msgspec.Struct):
    sku: str
    amount: float


async def test_publish_delivers_event_with_identity_and_fresh_correlation(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """The subscriber gets name, payload, id, source (publisher identity), correlation id."""
    async with new_bus() as bus:
        box = inbox()
        await make_plugin(bus, "shop.Listener").subscribe("product.created", box)
        publisher = make_plugin(bus, "shop.Creator")
        first = await publisher.publish("product.created", {"id": 1})
        second = await publisher.publish("product.created", {"id": 2})
        a, b = await box.wait(2)
    assert isinstance(a, Event)
    assert (a.name, a.payload, a.id, a.source) == (
        "product.created",
        {"id": 1},
        first,
        "shop.Creator",
    )
    assert b.id == second and first != second
    assert a.parent_id is None
    assert a.correlation_id and a.correlation_id != b.correlation_id
    assert a.timestamp > 0


async def test_publish_accepts_struct_payload(
    new_bus: BusFactory, driver: str, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A Struct payload arrives as the Struct in-process, as its fields over NATS."""
    async with new_bus() as bus:
        box = inbox()
        await make_plugin(bus, "a.B").subscribe("price.set", box)
        await make_plugin(bus).publish("price.set", Price("PEN", 2.5))
        (event,) = await box.wait(1)
    assert msgspec.convert(event.payload, Price) == Price("PEN", 2.5)
    if driver == "memory":
        assert event.payload == Price("PEN", 2.5)
    else:
        assert event.payload == {"sku": "PEN", "amount": 2.5}


async def test_publish_refuses_bad_payload_and_wildcard_name(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A payload that is not a dict/Struct, or a name with a wildcard, is a clear error."""
    async with new_bus() as bus:
        handle = make_plugin(bus)
        with pytest.raises(MicroCoreError, match="dict or a msgspec Struct"):
            await handle.publish("a.b", [1, 2])
        with pytest.raises(MicroCoreError, match="wildcard"):
            await handle.publish("a.*", {})


async def test_publish_keeps_order_per_subscriber(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """Each subscriber sees events in publish order, even past its buffer size."""
    async with new_bus(EVENT_BUS_BUFFER=8) as bus:
        boxes = [inbox() for _ in range(3)]
        for index, box in enumerate(boxes):
            await make_plugin(bus, f"s.S{index}").subscribe("n.*", box)
        handle = make_plugin(bus)
        for i in range(300):
            await handle.publish("n.x", {"i": i})
        for box in boxes:
            events = await box.wait(300)
            assert [e.payload["i"] for e in events] == list(range(300))


async def test_publish_with_no_subscriber_returns_an_id(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """Publishing to a name nobody subscribes to is fine and still recorded."""
    async with new_bus() as bus:
        event_id = await make_plugin(bus).publish("nobody.listens", {})
        assert bus.history()[-1].id == event_id


async def test_subscribe_refuses_sync_handler_bad_pattern_and_bad_retries(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """Sync handlers, malformed patterns and negative retries are refused at subscribe."""

    def sync_handler(event: Event) -> None:
        return None

    async def handler(event: Event) -> None:
        return None

    async with new_bus() as bus:
        handle = make_plugin(bus, "shop.P")
        with pytest.raises(HookError, match="async def sync_handler"):
            await handle.subscribe("a.b", sync_handler)  # type: ignore[arg-type]  # the point
        with pytest.raises(RegistrationError, match="last token"):
            await handle.subscribe("a.>.b", handler)
        with pytest.raises(RegistrationError, match="retries"):
            await handle.subscribe("a.b", handler, retries=-1)
        assert bus.subscriptions() == []


async def test_subscribe_twice_is_refused_and_unsubscribe_unknown_names_what_exists(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """One handler per pattern per plugin; unsubscribing something unknown lists what exists."""

    async def handler(event: Event) -> None:
        return None

    async with new_bus() as bus:
        handle = make_plugin(bus, "shop.P")
        await handle.subscribe("a.b", handler)
        with pytest.raises(RegistrationError, match="already subscribed"):
            await handle.subscribe("a.b", handler)
        with pytest.raises(RegistrationError, match=r"'a\.b' -> "):
            await handle.unsubscribe("x.y", handler)


async def test_unsubscribe_stops_new_deliveries(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """After unsubscribe the handler gets nothing new; the owner no longer lists it."""
    async with new_bus() as bus:
        box, other = inbox(), inbox()
        handle = make_plugin(bus, "shop.P")
        await handle.subscribe("a.b", box)
        await make_plugin(bus, "shop.Q").subscribe("a.b", other)
        publisher = make_plugin(bus)
        await publisher.publish("a.b", {"n": 1})
        await box.wait(1)
        await handle.unsubscribe("a.b", box)
        assert handle._owner.labels("subscription") == []
        await publisher.publish("a.b", {"n": 2})
        await other.wait(2)
    assert [e.payload["n"] for e in box.events] == [1]


async def test_pending_owner_receives_nothing_until_active(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """Subscriptions of a booting plugin are invisible until the kernel activates it."""
    async with new_bus() as bus:
        box = inbox()
        handle = make_plugin(bus, "shop.Booting", active=False)
        await handle.subscribe("a.b", box)
        publisher = make_plugin(bus)
        await publisher.publish("a.b", {"n": 1})
        assert bus.subscriptions()[0].state == "pending"
        handle._owner.activate()
        bus.on_plugins_changed()
        await publisher.publish("a.b", {"n": 2})
        events = await box.wait(1)
        await anyio.lowlevel.checkpoint()
    assert [e.payload["n"] for e in events] == [2]


async def test_released_owner_subscriptions_vanish(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """Releasing the owner removes its subscriptions; later events are not delivered to it."""
    async with new_bus() as bus:
        box, other = inbox(), inbox()
        handle = make_plugin(bus, "shop.Gone")
        await handle.subscribe("a.>", box)
        await make_plugin(bus, "shop.Stays").subscribe("a.>", other)
        publisher = make_plugin(bus)
        await publisher.publish("a.b", {"n": 1})
        await box.wait(1)
        await handle._owner.release()
        assert [s.subscriber for s in bus.subscriptions()] == ["shop.Stays"]
        await publisher.publish("a.b", {"n": 2})
        await other.wait(2)
    assert len(box.events) == 1


async def test_failed_boot_leaves_no_subscription(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A pending owner released without activation (failed boot) never receives anything."""
    async with new_bus() as bus:
        box = inbox()
        handle = make_plugin(bus, "shop.Broken", active=False)
        await handle.subscribe("a.b", box)
        await handle._owner.release()
        assert bus.subscriptions() == []
        await make_plugin(bus).publish("a.b", {})
    assert box.events == []


async def test_hot_swap_moves_delivery_to_the_new_version_atomically(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """Old version released and new one activated in one step: each event goes to one of them."""
    async with new_memory_bus() as bus:
        old_box, new_box = inbox(), inbox()
        old = make_plugin(bus, "shop.P")
        await old.subscribe("a.b", old_box)
        new_owner = Owner("shop.P", replaces=old._owner)
        new = bus.bind(new_owner)
        await new.subscribe("a.b", new_box)  # same pattern and identity: no collision
        publisher = make_plugin(bus)
        await publisher.publish("a.b", {"n": 1})
        old._owner.mark_released()
        new_owner.activate()
        bus.on_plugins_changed()
        await publisher.publish("a.b", {"n": 2})
        await old._owner.release()
        await new_box.wait(1)
    assert [e.payload["n"] for e in old_box.events] == [1]
    assert [e.payload["n"] for e in new_box.events] == [2]


async def test_hot_swap_hands_each_event_to_exactly_one_version(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory, until: Until
) -> None:
    """Across a hot swap every event is handled once, by the old or the new version."""
    async with new_bus() as bus:
        old_box, new_box = inbox(), inbox()
        old = make_plugin(bus, "shop.P")
        await old.subscribe("a.b", old_box)
        publisher = make_plugin(bus)
        await publisher.publish("a.b", {"n": 1})
        new_owner = Owner("shop.P", replaces=old._owner)
        new = bus.bind(new_owner)
        await new.subscribe("a.b", new_box)
        old._owner.mark_released()
        new_owner.activate()
        bus.on_plugins_changed()
        await publisher.publish("a.b", {"n": 2})
        await old._owner.release()
        await publisher.publish("a.b", {"n": 3})
        await until(lambda: len(old_box.events) + len(new_box.events) >= 3)
    handled = sorted(e.payload["n"] for e in old_box.events + new_box.events)
    assert handled == [1, 2, 3]
    assert [e.payload["n"] for e in new_box.events][-1] == 3
    assert 2 in [e.payload["n"] for e in new_box.events]


async def test_publish_waits_for_room_when_a_buffer_is_full(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A slow subscriber applies backpressure: publish blocks, nothing is dropped."""
    gate = anyio.Event()
    seen: list[int] = []

    async def slow(event: Event) -> None:
        await gate.wait()
        seen.append(event.payload["i"])

    async with new_memory_bus(EVENT_BUS_BUFFER=2) as bus:
        await make_plugin(bus, "s.Slow").subscribe("x.y", slow)
        publisher = make_plugin(bus)
        published: list[int] = []

        async def produce() -> None:
            for i in range(10):
                await publisher.publish("x.y", {"i": i})
                published.append(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            with anyio.fail_after(5):
                while len(published) < 3:  # 1 in the handler + 2 buffered
                    await anyio.lowlevel.checkpoint()
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            assert len(published) == 3  # the 4th publish is blocked
            gate.set()
        with anyio.fail_after(5):
            while len(seen) < 10:
                await anyio.lowlevel.checkpoint()
    assert seen == list(range(10))


async def test_publish_times_out_on_a_buffer_that_stays_full(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A hung subscriber with a full buffer makes publish fail loudly after the timeout."""

    async def hang(event: Event) -> None:
        await anyio.sleep_forever()

    async with new_memory_bus(
        EVENT_BUS_BUFFER=1, EVENT_BUS_PUBLISH_TIMEOUT=0.05, EVENT_BUS_DRAIN_TIMEOUT=0.05
    ) as bus:
        await make_plugin(bus, "s.Hung").subscribe("x.y", hang)
        publisher = make_plugin(bus)
        with pytest.raises(PublishTimeout, match=r"s\.Hung"):
            for _ in range(5):
                await publisher.publish("x.y", {})


async def test_publisher_cancelled_as_its_event_finds_room_is_accounted_once(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """Cancelling a publisher that waits for room never leaves the bus miscounting.

    The handler ahead cancels the waiting publisher and returns, so the consumer
    frees a slot before the publisher runs again: the event is either queued
    (publish returned) or not (publish was cancelled), never both, and drain then
    finishes with nothing outstanding.
    """
    gate = anyio.Event()
    seen: list[int] = []
    waiting = anyio.CancelScope()

    async def handler(event: Event) -> None:
        if event.payload["i"] == 0:
            await gate.wait()
            waiting.cancel()  # the consumer takes the next item before the publisher resumes
        seen.append(event.payload["i"])

    async with new_memory_bus(EVENT_BUS_BUFFER=1) as bus:
        await make_plugin(bus, "s.Slow").subscribe("x.y", handler)
        publisher = make_plugin(bus)
        returned: list[int] = []

        async def blocked() -> None:
            with waiting:
                await publisher.publish("x.y", {"i": 2})
                returned.append(2)

        async with anyio.create_task_group() as tg:
            await publisher.publish("x.y", {"i": 0})  # taken by the handler, held at the gate
            await publisher.publish("x.y", {"i": 1})  # fills the one-slot buffer
            tg.start_soon(blocked)
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            assert returned == []  # event 2 waits for room
            gate.set()
        with anyio.fail_after(5):
            await bus.drain()
        assert bus._router.fanout.outstanding == 0
    assert seen == [0, 1, *returned]


async def test_handler_publish_inherits_correlation_and_parent(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """What a handler publishes shares the event's correlation id and has it as parent."""
    async with new_bus() as bus:
        relay = make_plugin(bus, "shop.Relay")

        async def forward(event: Event) -> None:
            await relay.publish("b.second", {"from": event.id})

        await relay.subscribe("a.first", forward)
        box = inbox()
        await make_plugin(bus, "shop.End").subscribe("b.second", box)
        first_id = await make_plugin(bus).publish("a.first", {})
        (second,) = await box.wait(1)
        first = next(e for e in bus.history() if e.id == first_id)
        assert second.parent_id == first_id
        assert second.correlation_id == first.correlation_id
        assert second.source == "shop.Relay"
        assert [e.id for e in bus.chain(second.id)] == [first_id, second.id]


async def test_publish_inside_causation_uses_its_correlation_id(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """An HTTP request's correlation id (set by causation) is carried by what it publishes."""
    async with new_bus() as bus:
        handle = make_plugin(bus)
        with causation("request-42"):
            await handle.publish("a.b", {})
        await handle.publish("a.b", {})
        inside, outside = bus.history()
    assert inside.correlation_id == "request-42"
    assert outside.correlation_id != "request-42"


async def test_tap_sees_every_event_synchronously_and_can_be_removed(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A tap is called before publish returns; a failing tap does not break publishing."""
    async with new_bus() as bus:
        seen: list[Event] = []
        remove = bus.tap(seen.append)

        def broken(event: Event) -> None:
            raise RuntimeError("observer bug")

        remove_broken = bus.tap(broken)
        handle = make_plugin(bus)
        event_id = await handle.publish("a.b", {"n": 1})
        assert [e.id for e in seen] == [event_id]
        remove()
        remove()  # idempotent
        remove_broken()
        await handle.publish("a.b", {"n": 2})
    assert len(seen) == 1


async def test_history_is_bounded_and_filterable(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """History keeps the last EVENT_BUS_HISTORY events, filterable by correlation id."""
    async with new_bus(EVENT_BUS_HISTORY=3) as bus:
        handle = make_plugin(bus)
        for i in range(5):
            with causation("c-even" if i % 2 == 0 else "c-odd"):
                await handle.publish("a.b", {"i": i})
        assert [e.payload["i"] for e in bus.history()] == [2, 3, 4]
        assert [e.payload["i"] for e in bus.history(correlation_id="c-even")] == [2, 4]
        assert [e.payload["i"] for e in bus.history(limit=1)] == [4]
        assert bus.history(limit=0) == []


async def test_subscriptions_and_flows_describe_who_talks_to_whom(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """subscriptions() lists each one with counters; flows() maps publishers and subscribers."""

    async def handler(event: Event) -> Any:
        return {"ok": True}

    async with new_bus() as bus:
        await make_plugin(bus, "shop.Sub").subscribe("a.*", handler, retries=2)
        await make_plugin(bus, "shop.Responder").subscribe("q.ask", handler)
        client = make_plugin(bus, "shop.Pub")
        await client.publish("a.b", {})
        assert await client.request("q.ask", {}) == {"ok": True}
        rows = bus.subscriptions()
        flows = bus.flows()
    assert [(r.subscriber, r.pattern, r.retries) for r in rows] == [
        ("shop.Responder", "q.ask", 0),
        ("shop.Sub", "a.*", 2),
    ]
    assert flows.publishers == {"a.b": ["shop.Pub"], "q.ask": ["shop.Pub"]}
    assert flows.subscribers == {"a.*": ["shop.Sub"], "q.ask": ["shop.Responder"]}
    assert flows.responders == {"q.ask": ["shop.Responder"]}


async def test_outcomes_count_by_event_name_and_survive_a_hot_swap(
    new_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """outcomes(): delivered and failed per event name and subscriber, kept across versions."""

    async def handler(event: Event) -> None:
        if event.payload.get("bad"):
            raise RuntimeError("refused")

    async with new_bus(EVENT_BUS_RETRY_BACKOFF=0.001) as bus:
        old = make_plugin(bus, "shop.Audit")
        await old.subscribe("a.*", handler)
        publisher = make_plugin(bus, "shop.Pub")
        await publisher.publish("a.b", {})
        await publisher.publish("a.c", {"bad": True})
        await until(lambda: len(bus.outcomes()) == 2)
        new_owner = Owner("shop.Audit", replaces=old._owner)
        await bus.bind(new_owner).subscribe("a.*", handler)
        old._owner.mark_released()
        new_owner.activate()
        bus.on_plugins_changed()
        await old._owner.release()
        await publisher.publish("a.b", {})
        await until(lambda: bus.outcomes()[0].delivered == 2)
        rows = bus.outcomes()
    assert rows == [
        DeliveryOutcome(name="a.b", subscriber="shop.Audit", delivered=2, failed=0),
        DeliveryOutcome(name="a.c", subscriber="shop.Audit", delivered=0, failed=1),
    ]


async def test_outcomes_stop_adding_names_past_the_cap(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin publishing made-up names cannot grow the counters: past the cap, '_other'."""
    monkeypatch.setattr("tools.event_bus._delivery.MAX_COUNTED", 2)
    box: list[str] = []

    async def handler(event: Event) -> None:
        box.append(event.name)

    async with new_memory_bus() as bus:
        await make_plugin(bus, "shop.All").subscribe(">", handler)
        publisher = make_plugin(bus)
        for n in range(5):
            await publisher.publish(f"made.up{n}", {})
        with anyio.fail_after(5):
            while len(box) < 5:
                await anyio.lowlevel.checkpoint()
        rows = bus.outcomes()
    assert [(r.name, r.delivered) for r in rows] == [
        ("_other", 3),
        ("made.up0", 1),
        ("made.up1", 1),
    ]
