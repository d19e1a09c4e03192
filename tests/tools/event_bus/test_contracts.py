"""Typed contracts, responders and broadcast subscriptions, on every driver.

``Event[T]`` in a handler converts the payload to ``T`` (in process and over NATS
alike); ``respond`` answers every request, ``None`` included; ``broadcast=True``
reaches every replica. In development (``EVENT_BUS_VALIDATE``) a payload that breaks
its contract fails at the publisher.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
import pytest
import structlog

from microcore import Event
from microcore.events import Contract
from microcore.tooling import NoResponder, RegistrationError
from tests.support import eventually
from tests.tools.event_bus.conftest import BusFactory, InboxFactory, PluginFactory, Until
from tools.event_bus import EventPayloadError, RequestFailed


class Placed(msgspec.Struct):
    id: Annotated[int, msgspec.Meta(gt=0)]
    total: float = 0.0


class Item(msgspec.Struct):
    sku: str


class Receiver:
    """Typed handlers that record what they got."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.changed = anyio.Event()

    async def on_placed(self, event: Event[Placed]) -> None:
        self.got.append(event.payload)
        self.changed.set()

    async def on_item(self, event: Event[Item]) -> Item | None:
        return None if event.payload.sku == "none" else Item(sku=event.payload.sku.upper())


async def test_typed_subscriber_gets_the_struct_on_every_driver(
    new_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """A handler annotated Event[Placed] gets a Placed, from a Struct or a dict payload."""
    receiver = Receiver()
    async with new_bus() as bus:
        await make_plugin(bus, "shop.Ship").subscribe("order.placed", receiver.on_placed)
        await bus.on_boot_complete()
        publisher = make_plugin(bus, "shop.Cart")
        await publisher.publish("order.placed", Placed(id=1, total=2.5))
        await publisher.publish("order.placed", {"id": 2})
        await until(lambda: len(receiver.got) == 2)
    assert receiver.got == [Placed(id=1, total=2.5), Placed(id=2)]


async def test_responder_none_is_a_reply_and_reply_type_converts(
    new_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """respond: whatever the handler returns, None included, is the reply (no timeout);
    ``reply=Item`` gives the Struct on every driver."""
    receiver = Receiver()
    async with new_bus() as bus:
        await make_plugin(bus, "shop.Stock").respond("item.get", receiver.on_item)
        await bus.on_boot_complete()
        asker = make_plugin(bus, "shop.Cart")
        with anyio.fail_after(2):
            assert await asker.request("item.get", Item(sku="none"), timeout=30) is None
        assert await asker.request("item.get", {"sku": "pen"}, reply=Item) == Item(sku="PEN")


async def test_responder_gets_requests_only(
    new_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory, until: Until
) -> None:
    """A published event does not reach a responder; a subscriber of the name still gets it."""
    calls: list[Event] = []

    async def answer(event: Event) -> str:
        calls.append(event)
        return "ok"

    box = inbox()
    async with new_bus() as bus:
        await make_plugin(bus, "shop.Stock").respond("item.get", answer)
        await make_plugin(bus, "shop.Audit").subscribe("item.get", box)
        await bus.on_boot_complete()
        await make_plugin(bus, "shop.Cart").publish("item.get", {"sku": "x"})
        await box.wait(1)
        assert calls == []


async def test_one_responder_per_name_per_plugin(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A second respond for one name in one plugin is refused naming the first handler;
    names only (no patterns)."""
    receiver = Receiver()
    async with new_memory_bus() as bus:
        handle = make_plugin(bus, "shop.Stock")
        await handle.respond("item.get", receiver.on_item)
        with pytest.raises(RegistrationError, match=r"already responds to 'item\.get'.*on_item"):
            await handle.respond("item.get", receiver.on_item)
        with pytest.raises(Exception, match=r"item\.\*"):
            await handle.respond("item.*", receiver.on_item)
        await make_plugin(bus, "shop.Other").respond("item.get", receiver.on_item)


async def test_responder_goes_with_its_plugin(
    new_bus: BusFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """Unloading the plugin removes its responder: then NoResponder."""
    from microcore.tooling import Owner

    receiver = Receiver()
    async with new_bus() as bus:
        owner = Owner("shop.Stock")
        owner.activate()
        await bus.bind(owner).respond("item.get", receiver.on_item)
        await bus.on_boot_complete()
        asker = make_plugin(bus, "shop.Cart")
        assert await asker.request("item.get", {"sku": "a"}, reply=Item) == Item(sku="A")
        assert [c.kind for c in bus.contracts()] == ["responder"]
        await owner.release()
        bus.on_plugins_changed()
        assert bus.contracts() == []
        with pytest.raises(NoResponder, match=r"respond\('item\.get'"):
            await asker.request("item.get", {"sku": "a"}, timeout=2)


async def test_failing_responder_is_request_failed(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A responder that raises (after its retries) fails the request."""

    async def broken(event: Event) -> None:
        raise ValueError("no stock table")

    async with new_memory_bus(EVENT_BUS_RETRY_BACKOFF=0) as bus:
        await make_plugin(bus, "shop.Stock").respond("item.get", broken, retries=1)
        with pytest.raises(RequestFailed, match="no stock table"):
            await make_plugin(bus, "shop.Cart").request("item.get", {})


async def test_development_publish_breaking_the_contract_fails_at_the_publisher(
    new_memory_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """With validation on, a Struct breaking its own constraints, or a payload a local
    handler's Event[T] refuses, raises EventPayloadError naming field and handler."""
    receiver = Receiver()
    async with new_memory_bus(EVENT_BUS_VALIDATE="1") as bus:
        await make_plugin(bus, "shop.Ship").subscribe("order.placed", receiver.on_placed)
        publisher = make_plugin(bus, "shop.Cart")
        with pytest.raises(EventPayloadError, match=r"own contract Placed.*\$\.id"):
            await publisher.publish("order.other", Placed(id=0))
        with pytest.raises(
            EventPayloadError, match=r"Placed, which handler on_placed of shop\.Ship"
        ):
            await publisher.publish("order.placed", {"id": "one"})
        assert bus.history() == []


async def test_payload_breaking_the_contract_is_dead_lettered_at_once(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """Without validation (production) the subscriber side refuses it: no retries, straight
    to ``_dlq.<name>`` with a message naming the type and the field."""
    receiver = Receiver()
    dead = inbox()
    async with new_memory_bus(EVENT_BUS_VALIDATE="0") as bus:
        await make_plugin(bus, "shop.Ship").subscribe("order.placed", receiver.on_placed, retries=3)
        await make_plugin(bus, "shop.Ops").subscribe("_dlq.order.placed", dead)
        with structlog.testing.capture_logs():
            await make_plugin(bus, "shop.Cart").publish("order.placed", {"id": "one"})
            (letter,) = await dead.wait(1)
    assert letter.payload["attempts"] == 1
    assert letter.payload["subscriber"] == "shop.Ship"
    assert "EventPayloadError" in letter.payload["error"] and "$.id" in letter.payload["error"]
    assert receiver.got == []


async def test_contracts_report_types_retries_and_kinds(
    new_memory_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """``contracts()`` lists each active handler with its declared payload, reply, retries."""
    receiver = Receiver()
    async with new_memory_bus() as bus:
        await make_plugin(bus, "shop.Ship").subscribe("order.placed", receiver.on_placed, retries=2)
        await make_plugin(bus, "shop.Stock").respond("item.get", receiver.on_item)
        await make_plugin(bus, "shop.Live").subscribe("order.*", inbox(), broadcast=True)
        await make_plugin(bus, "shop.Wait", active=False).subscribe("order.x", inbox())
        assert bus.contracts() == [
            Contract(
                kind="responder",
                pattern="item.get",
                owner="shop.Stock",
                payload=Item,
                reply=Item | None,
            ),
            Contract(kind="broadcast", pattern="order.*", owner="shop.Live"),
            Contract(
                kind="subscription",
                pattern="order.placed",
                owner="shop.Ship",
                retries=2,
                payload=Placed,
            ),
        ]


async def test_broadcast_gets_events_not_requests(
    new_memory_bus: BusFactory, inbox: InboxFactory, make_plugin: PluginFactory
) -> None:
    """In process a broadcast subscription is a subscription that requests do not reach."""
    box = inbox()
    async with new_memory_bus() as bus:
        await make_plugin(bus, "shop.Live").subscribe("order.*", box, broadcast=True)
        asker = make_plugin(bus, "shop.Cart")
        with pytest.raises(NoResponder):
            await asker.request("order.placed", {})
        await asker.publish("order.placed", {"n": 1})
        (event,) = await box.wait(1)
    assert event.payload == {"n": 1}


async def test_broadcast_reaches_every_replica(
    nats_bus: BusFactory, inbox: InboxFactory, make_plugin: PluginFactory, until: Until
) -> None:
    """Two replicas of one plugin: a broadcast subscription gets each event in both, a plain
    one in exactly one; requests do not reach the broadcast handler."""
    live = [inbox(), inbox()]
    plain = [inbox(), inbox()]
    async with nats_bus() as one, nats_bus() as two:
        for bus, box, once in zip((one, two), live, plain, strict=True):
            handle = make_plugin(bus, "shop.Live")
            await handle.subscribe("order.*", box, broadcast=True)
            await handle.subscribe("order.placed", once)
            await bus.on_boot_complete()
        publisher = make_plugin(one, "shop.Cart")
        for number in range(3):
            await publisher.publish("order.placed", {"n": number})
        await live[0].wait(3)
        await live[1].wait(3)
        await until(lambda: len(plain[0].events) + len(plain[1].events) == 3, timeout=10)
        assert await publisher.request("order.placed", {"n": 9}, timeout=5) is None  # plain one
    assert [e.payload["n"] for e in live[1].events] == [0, 1, 2]
    assert len(live[0].events) == 3


async def test_broadcast_on_nats_is_at_most_once_and_never_blocks(
    nats_bus: BusFactory, make_plugin: PluginFactory, need_nats: str
) -> None:
    """A broadcast replica too slow to keep up drops the excess (logged) instead of holding
    NATS's delivery; a frame that is no event is logged and skipped."""
    import nats

    release = anyio.Event()
    got: list[Event] = []

    async def slow(event: Event) -> None:
        got.append(event)
        await release.wait()

    async with nats_bus(EVENT_BUS_BUFFER=1, EVENT_BUS_PUBLISH_TIMEOUT=0.2) as bus:
        await make_plugin(bus, "shop.Live").subscribe("order.*", slow, broadcast=True)
        await bus.on_boot_complete()
        stream = bus._router.backend._settings.stream  # type: ignore[attr-defined]
        raw = await nats.connect(need_nats)
        with structlog.testing.capture_logs() as logs:
            try:
                await raw.publish(f"{stream}.order.bad", b"not msgpack")
                await raw.flush()
            finally:
                await raw.close()
            publisher = make_plugin(bus, "shop.Cart")
            for number in range(6):
                await publisher.publish("order.placed", {"n": number})
            await eventually(
                lambda: any(e["event"] == "event_bus_nats_broadcast_dropped" for e in logs),
                timeout=10,
            )
            release.set()
        assert any(e["event"] == "event_bus_nats_bad_event" for e in logs)
    assert 1 <= len(got) < 6
