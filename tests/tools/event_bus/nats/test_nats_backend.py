"""The NATS driver: queue groups across replicas, durability, acks, reconnects, the wire.

Two buses on one stream are two replicas of an app. What every driver must do
lives in the contract tests (``new_bus``); this file covers what only a network
bus has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import pytest
import structlog

from microcore import Event
from microcore.tooling import NoResponder, RequestTimeout
from tests.support import FakeKernel, eventually, free_port
from tests.tools.event_bus.conftest import (
    BusFactory,
    InboxFactory,
    PluginFactory,
    PrivateNats,
    nats_backend_of,
)
from tools.config.config_tool import ConfigTool
from tools.event_bus import EventPayloadError, RequestFailed
from tools.event_bus.event_bus_tool import EventBusTool
from tools.event_bus.nats import NatsUnavailable
from tools.event_bus.nats.wire import Subjects


async def settled(condition: Any, *, timeout: float = 10.0) -> None:
    """Wait for ``condition()`` across network round trips (polls every 5 ms)."""
    await eventually(condition, timeout=timeout, interval=0.005)


@pytest.fixture
async def jetstream(need_nats: str) -> AsyncIterator[Any]:
    """A JetStream manager on the test NATS server, to look at streams and consumers."""
    import nats

    client = await nats.connect(need_nats, connect_timeout=2, max_reconnect_attempts=0)
    try:
        yield client.jsm()
    finally:
        await client.close()


async def drained(jsm: Any, stream: str) -> bool:
    """The stream holds no event and no consumer has one delivered but not acked."""
    return await pending(jsm, stream) == (0, 0)


async def pending(jsm: Any, stream: str) -> tuple[int, int]:
    """(events the stream still holds, events delivered but not acked), over all consumers."""
    info = await jsm.stream_info(stream)
    unacked = sum(c.num_ack_pending for c in await jsm.consumers_info(stream))
    return info.state.messages, unacked


# -- configuration -----------------------------------------------------------------------


class _Kernel(FakeKernel):
    def start_background(self, fn: Any, *args: Any, name: str | None = None) -> None:
        raise AssertionError("nothing may start before NATS answered")


async def test_nats_unreachable_fails_setup_naming_the_url() -> None:
    """A NATS URL nothing listens on fails setup at once, naming it and how to fix it."""
    url = f"nats://127.0.0.1:{free_port()}"
    kernel = _Kernel({"EVENT_BUS_URL": url})
    bus = EventBusTool(ConfigTool(kernel), kernel)
    with anyio.fail_after(10), pytest.raises(NatsUnavailable, match="nats-server -js") as info:
        await bus.setup()
    assert url in str(info.value)
    assert info.value.http_status == 503


def test_nats_consumer_names_are_stable_safe_and_distinct() -> None:
    """Every replica derives the same durable name; names are NATS-safe and per pattern."""
    subjects = Subjects("shop")
    first = subjects.durable("products.ProductStatsPlugin", "product.*")
    assert first == Subjects("shop").durable("products.ProductStatsPlugin", "product.*")
    assert first.startswith("products_ProductStatsPlugin_")
    assert first != subjects.durable("products.ProductStatsPlugin", "product.>")
    assert first.replace("_", "").replace("-", "").isalnum()
    assert subjects.event("product.created") == "shop.product.created"
    assert subjects.request("price.quote") == "shop_req.price.quote"


# -- queue groups across replicas --------------------------------------------------------


async def test_nats_each_event_is_handled_once_per_plugin_across_replicas(
    nats_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """Two replicas, two plugins: every event reaches each plugin exactly once, shared out."""
    async with nats_bus() as a, nats_bus() as b:
        stats = {"a": inbox(), "b": inbox()}
        audit = {"a": inbox(), "b": inbox()}
        for name, bus in (("a", a), ("b", b)):
            await make_plugin(bus, "shop.Stats").subscribe("product.created", stats[name])
            await make_plugin(bus, "shop.Audit").subscribe("product.*", audit[name])
            await bus.on_boot_complete()  # as the kernel does: serve once the groups are joined
        sent = [await make_plugin(bus, "shop.Create").publish("product.created", {"i": i})
                for i in range(40) for bus in (a, b)]  # fmt: skip
        for boxes in (stats, audit):
            await settled(lambda b=boxes: sum(len(x.events) for x in b.values()) >= len(sent))
        await anyio.sleep(0.1)  # room for a duplicate to show up (there must be none)
    for boxes in (stats, audit):
        ids = [e.id for box in boxes.values() for e in box.events]
        assert sorted(ids) == sorted(sent)
        assert all(box.events for box in boxes.values())  # both replicas took a share


async def test_nats_request_is_answered_by_a_responder_in_another_replica(
    nats_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A request from replica A reaches the responder that only replica B runs."""

    async def quote(event: Event) -> Any:
        return {"price": event.payload["qty"] * 2, "by": "b"}

    async def broken(event: Event) -> None:
        raise LookupError("no such sku")

    async with nats_bus() as a, nats_bus() as b:
        await make_plugin(b, "shop.Pricing").subscribe("price.quote", quote)
        await make_plugin(b, "shop.Stock").subscribe("stock.check", broken)
        await b.on_boot_complete()
        client = make_plugin(a, "shop.Cart")
        assert await client.request("price.quote", {"qty": 4}) == {"price": 8, "by": "b"}
        with anyio.fail_after(2), pytest.raises(NoResponder, match=r"any replica"):
            await client.request("nobody.answers", {}, timeout=30)
        with anyio.fail_after(2), pytest.raises(RequestFailed, match="no such sku"):
            await client.request("stock.check", {}, timeout=30)
        assert nats_backend_of(a).waiting == set()


async def test_nats_request_timeout_is_request_timeout(
    nats_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A responder that never answers: RequestTimeout after the timeout, not before."""

    async def hang(event: Event) -> None:
        await anyio.sleep_forever()

    async with nats_bus(EVENT_BUS_DRAIN_TIMEOUT=0.05) as bus:
        await make_plugin(bus, "shop.Slow").subscribe("q.slow", hang)
        started = anyio.current_time()
        with pytest.raises(RequestTimeout, match="1 responder"):
            await make_plugin(bus).request("q.slow", {}, timeout=0.2)
        assert 0.2 <= anyio.current_time() - started < 1.5


# -- durability ----------------------------------------------------------------------------


async def test_nats_events_wait_for_a_plugin_with_no_replica_running(
    nats_bus: BusFactory,
    nats_stream: dict[str, str],
    jetstream: Any,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
) -> None:
    """Events published while every replica of a plugin is down reach it when one comes back."""
    async with nats_bus() as publisher_bus:
        publisher = make_plugin(publisher_bus, "shop.Create")
        await publisher.publish("order.paid", {"n": 0})  # nobody subscribed yet: not kept
        async with nats_bus() as first:
            box = inbox()
            await make_plugin(first, "shop.Mailer").subscribe("order.*", box)
            await first.on_boot_complete()
            await publisher.publish("order.paid", {"n": 1})
            await box.wait(1)
        sent = [await publisher.publish("order.paid", {"n": n}) for n in (2, 3, 4)]
        await nats_backend_of(publisher_bus).trim()  # what nobody needs goes (trimmed each second)
        assert (await pending(jetstream, nats_stream["EVENT_BUS_STREAM"]))[0] == 3
        async with nats_bus() as second:
            late = inbox()
            await make_plugin(second, "shop.Mailer").subscribe("order.*", late)
            events = await late.wait(3)
            assert [e.id for e in events] == sent
            await settled(lambda: len(late.events) == 3)
        assert [e.payload["n"] for e in box.events] == [1]


async def test_nats_events_left_at_shutdown_go_to_another_replica(
    nats_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A replica that shuts down mid-stream hands back what it did not finish; none is lost."""
    stuck = anyio.Event()

    async def hang(event: Event) -> None:
        stuck.set()
        await anyio.sleep_forever()

    done = inbox()
    async with nats_bus() as survivor:
        await make_plugin(survivor, "shop.Worker").subscribe("job.run", done)
        async with nats_bus(EVENT_BUS_DRAIN_TIMEOUT=0.1) as leaving:
            await make_plugin(leaving, "shop.Worker").subscribe("job.run", hang)
            await leaving.on_boot_complete()
            publisher = make_plugin(survivor, "shop.Boss")
            sent: list[str] = []
            while not stuck.is_set():  # until the leaving replica holds at least one
                sent.append(await publisher.publish("job.run", {"n": len(sent)}))
                await anyio.sleep(0.01)  # paces the producer; the loop ends on ``stuck``
            sent += [await publisher.publish("job.run", {"n": len(sent)}) for _ in range(5)]
        await settled(lambda: {e.id for e in done.events} >= set(sent))


async def test_nats_crashed_replica_events_are_redelivered_after_ack_wait(
    nats_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A replica that vanishes without a word: JetStream redelivers its events after the wait."""
    stuck = anyio.Event()

    async def hang(event: Event) -> None:
        stuck.set()
        await anyio.sleep_forever()

    settings = {"EVENT_BUS_ACK_WAIT": "0.5", "EVENT_BUS_DRAIN_TIMEOUT": "0.1"}
    done = inbox()
    async with nats_bus(**settings) as survivor:
        await make_plugin(survivor, "shop.Worker").subscribe("job.run", done)
        async with nats_bus(**settings) as crashing:
            await make_plugin(crashing, "shop.Worker").subscribe("job.run", hang)
            await crashing.on_boot_complete()
            publisher = make_plugin(survivor, "shop.Boss")
            sent: list[str] = []
            while not stuck.is_set():
                sent.append(await publisher.publish("job.run", {"n": len(sent)}))
                await anyio.sleep(0.01)  # paces the producer; the loop ends on ``stuck``
            with structlog.testing.capture_logs():
                client = nats_backend_of(crashing)._nc
                assert client is not None
                await client.close()  # the process died: no nak, no ack
                await settled(lambda: {e.id for e in done.events} >= set(sent))


async def test_nats_slow_handler_is_not_redelivered_while_it_works(
    nats_bus: BusFactory, nats_stream: dict[str, str], jetstream: Any, make_plugin: PluginFactory
) -> None:
    """A handler slower than the ack wait keeps its event (in-progress acks): handled once."""
    calls: list[str] = []

    async def slow(event: Event) -> None:
        calls.append(event.id)
        await anyio.sleep(0.8)

    async with nats_bus(EVENT_BUS_ACK_WAIT=0.3) as a, nats_bus(EVENT_BUS_ACK_WAIT=0.3) as b:
        await make_plugin(a, "shop.Slow").subscribe("job.run", slow)
        await make_plugin(b, "shop.Slow").subscribe("job.run", slow)
        await b.on_boot_complete()
        sent = await make_plugin(a).publish("job.run", {})
        await settled(lambda: a.subscriptions()[0].delivered + b.subscriptions()[0].delivered)
        await settled(
            lambda: (nats_backend_of(a).acks.held, nats_backend_of(b).acks.held) == ({}, {})
        )
        stream = nats_stream["EVENT_BUS_STREAM"]
        await settled(lambda: drained(jetstream, stream))
    assert calls == [sent]


async def test_nats_events_are_acked_after_success_and_after_their_dead_letter(
    nats_bus: BusFactory,
    nats_stream: dict[str, str],
    jetstream: Any,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
) -> None:
    """Handled and dead-lettered events are acked: the stream lets them go, none redelivered."""

    async def failing(event: Event) -> None:
        raise KeyError("sku")

    async with nats_bus(EVENT_BUS_RETRY_BACKOFF=0.001) as bus:
        ok, dead = inbox(), inbox()
        await make_plugin(bus, "shop.Ok").subscribe("order.paid", ok)
        await make_plugin(bus, "shop.Fails").subscribe("order.paid", failing, retries=1)
        await make_plugin(bus, "ops.Dlq").subscribe("_dlq.>", dead)
        event_id = await make_plugin(bus).publish("order.paid", {"id": 9})
        (letter,) = await dead.wait(1)
        await ok.wait(1)
        await settled(lambda: drained(jetstream, nats_stream["EVENT_BUS_STREAM"]))
        assert nats_backend_of(bus).acks.dead_letters == {}
    assert letter.payload["event"]["id"] == event_id
    assert letter.payload["subscriber"] == "shop.Fails"
    assert letter.payload["attempts"] == 2


# -- the wire -------------------------------------------------------------------------------


async def test_nats_payload_msgpack_cannot_carry_is_refused(
    nats_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A payload with a value msgpack cannot encode fails publish, naming the event."""
    async with nats_bus() as bus:
        with pytest.raises(EventPayloadError, match=r"'a\.b' cannot be sent over NATS"):
            await make_plugin(bus).publish("a.b", {"when": object()})


async def test_nats_undecodable_message_is_dropped_and_the_rest_flows(
    nats_bus: BusFactory,
    nats_stream: dict[str, str],
    jetstream: Any,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
) -> None:
    """A foreign, undecodable message on the stream is logged and terminated, not redelivered."""
    import nats

    stream = nats_stream["EVENT_BUS_STREAM"]
    async with nats_bus() as bus:
        box = inbox()
        await make_plugin(bus, "shop.L").subscribe("a.b", box)
        client = await nats.connect(nats_stream["EVENT_BUS_URL"])
        try:
            with structlog.testing.capture_logs() as logs:
                await client.jetstream().publish(f"{stream}.a.b", b"\xc1 not msgpack")
                await make_plugin(bus).publish("a.b", {"n": 1})
                (event,) = await box.wait(1)
                await settled(lambda: drained(jetstream, stream))
        finally:
            await client.close()
    assert event.payload == {"n": 1}
    assert any(e["event"] == "event_bus_nats_bad_event" for e in logs)


# -- reconnects ------------------------------------------------------------------------------


async def wait_for_port(url: str) -> None:
    host, port = url.removeprefix("nats://").split(":")
    with anyio.fail_after(10):
        while True:
            try:
                await (await anyio.connect_tcp(host, int(port))).aclose()
                return
            except OSError:
                await anyio.sleep(0.02)  # the polling interval of a bounded wait


async def test_nats_restart_loses_no_acknowledged_event(
    private_nats: PrivateNats, make_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """NATS goes down and comes back (same storage): publishes wait it out, all are handled."""
    await wait_for_port(private_nats.url)
    settings = {"EVENT_BUS_URL": private_nats.url, "EVENT_BUS_STREAM": "restart"}
    with structlog.testing.capture_logs() as logs:
        async with make_bus(**settings) as bus:
            box = inbox()
            await make_plugin(bus, "shop.L").subscribe("a.*", box)
            publisher = make_plugin(bus, "shop.P")
            sent = [await publisher.publish("a.b", {"n": n}) for n in range(5)]
            await box.wait(5)
            await anyio.to_thread.run_sync(private_nats.stop)
            async with anyio.create_task_group() as tg:

                async def publish_more() -> None:
                    for n in range(5, 10):
                        sent.append(await publisher.publish("a.b", {"n": n}))

                tg.start_soon(publish_more)
                await anyio.sleep(0.3)  # NATS stays down a while: publish must wait it out
                private_nats.start()
            await settled(lambda: len(box.events) >= 10, timeout=15)
            await anyio.sleep(0.1)  # room for a duplicate to show up (there must be none)
    assert [e.id for e in box.events] == sent
    assert any(e["event"] == "event_bus_nats_disconnected" for e in logs)
    assert any(e["event"] == "event_bus_nats_reconnected" for e in logs)


async def test_nats_shutdown_while_nats_is_down_finishes_cleanly(
    private_nats: PrivateNats, make_bus: BusFactory, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """Shutting down while NATS is unreachable (reconnecting) does not raise out of the
    bus's drain: the connection is closed all the same and 'event_bus_nats_closed' is logged."""
    await wait_for_port(private_nats.url)
    settings = {
        "EVENT_BUS_URL": private_nats.url,
        "EVENT_BUS_STREAM": "shutdown_down",
        "EVENT_BUS_DRAIN_TIMEOUT": 0.5,
    }
    with structlog.testing.capture_logs() as logs:
        async with make_bus(**settings) as bus:
            await make_plugin(bus, "shop.L").subscribe("a.*", inbox())
            await bus.on_boot_complete()
            nc = nats_backend_of(bus)._nc
            assert nc is not None
            await anyio.to_thread.run_sync(private_nats.stop)
            await settled(lambda: not nc.is_connected)
            with anyio.fail_after(10):
                await bus.drain()
            assert nc.is_closed
    assert any(e["event"] == "event_bus_nats_closed" for e in logs)


async def test_nats_struct_reply_and_payload_cross_as_builtins(
    nats_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """A Struct reply arrives as its fields; msgspec.convert gets the Struct back."""

    class Quote(msgspec.Struct):
        sku: str
        price: float

    async def quote(event: Event) -> Any:
        return Quote(event.payload["sku"], 2.5)

    async with nats_bus() as bus:
        await make_plugin(bus, "shop.Pricing").subscribe("price.quote", quote)
        reply = await make_plugin(bus).request("price.quote", {"sku": "PEN"})
    assert reply == {"sku": "PEN", "price": 2.5}
    assert msgspec.convert(reply, Quote) == Quote("PEN", 2.5)
