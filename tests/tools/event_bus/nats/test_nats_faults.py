"""The NATS driver's error paths: JetStream refusing or timing out, failing flush and drain,
frames nobody can read, consumers that fail to bind, a stream shared with another app.

Faults are injected into the real client (nats-py) talking to a real server: the shared
test NATS, or a nats-server of the test's own where the server itself must differ.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import nats
import nats.errors
import nats.js.errors
import pytest
import structlog
from nats.js.api import RetentionPolicy, StreamConfig

from microcore import Event
from tests.support import FakeKernel, eventually, free_port
from tests.tools.event_bus.conftest import (
    BusFactory,
    InboxFactory,
    PluginFactory,
    nats_backend_of,
    nats_server_binary,
    running_bus,
)
from tools.config.config_tool import ConfigTool
from tools.event_bus import BusClosed, PublishTimeout
from tools.event_bus.event_bus_tool import EventBusTool
from tools.event_bus.nats import NatsUnavailable
from tools.event_bus.nats import backend as nats_backend
from tools.event_bus.nats.wire import CLAIM, VALUE, Subjects, decode_event, encode_reply


@pytest.fixture
async def client(need_nats: str) -> AsyncIterator[Any]:
    """A plain nats-py client on the test NATS."""
    nc = await nats.connect(need_nats, connect_timeout=2, max_reconnect_attempts=0)
    try:
        yield nc
    finally:
        await nc.close()


def refusing(error: BaseException, calls: list[str] | None = None) -> Any:
    """A NatsBackend._jetstream_publish that raises ``error`` (recording the subjects)."""

    async def publish(self: Any, subject: str, payload: bytes = b"", **options: Any) -> Any:
        if calls is not None:
            calls.append(subject)
        raise error

    return publish


async def setup_fails(**settings: str) -> None:
    """Set a bus up that must fail before it starts anything in the background."""
    kernel = FakeKernel(settings)
    bus = EventBusTool(ConfigTool(kernel), kernel)
    with anyio.fail_after(10):
        await bus.setup()


# -- the stream ------------------------------------------------------------------------------


@pytest.fixture
def nats_without_jetstream() -> Iterator[int]:
    """A nats-server of the test's own started without -js; its port."""
    port = free_port()
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        server.kill()
        server.wait()


async def test_nats_without_jetstream_fails_setup_saying_so(nats_without_jetstream: int) -> None:
    """A nats-server started without -js fails setup: 'has no JetStream', start it with -js."""
    port = nats_without_jetstream
    with anyio.fail_after(10):
        while True:
            try:
                await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                break
            except OSError:
                await anyio.sleep(0.02)  # the polling interval of a bounded wait
    with pytest.raises(NatsUnavailable, match=r"no JetStream|did not answer"):
        await setup_fails(EVENT_BUS_URL=f"nats://127.0.0.1:{port}")


async def test_nats_stream_whose_subjects_another_stream_holds_fails_setup(
    need_nats: str, client: Any
) -> None:
    """A stream that cannot be created (its subjects belong to another stream) fails setup
    with NatsUnavailable naming the stream and EVENT_BUS_STREAM, not a raw nats-py error."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    jsm = client.jsm()
    await jsm.add_stream(StreamConfig(name=f"{name}_other", subjects=[f"{name}.>"]))
    try:
        with pytest.raises(NatsUnavailable, match="subjects overlap") as info:
            await setup_fails(EVENT_BUS_URL=need_nats, EVENT_BUS_STREAM=name)
        assert "EVENT_BUS_STREAM" in str(info.value)
    finally:
        await jsm.delete_stream(f"{name}_other")


async def test_nats_existing_interest_stream_is_used_with_a_warning(
    nats_stream: dict[str, str], client: Any, make_plugin: PluginFactory, inbox: InboxFactory
) -> None:
    """A stream made earlier with interest retention is used as it is, with a warning that
    events published while nats-server shuts down can be lost there."""
    name = nats_stream["EVENT_BUS_STREAM"]
    await client.jsm().add_stream(
        StreamConfig(name=name, subjects=[f"{name}.>"], retention=RetentionPolicy.INTEREST)
    )
    with structlog.testing.capture_logs() as logs:
        async with running_bus(**nats_stream) as bus:
            box = inbox()
            await make_plugin(bus, "shop.L").subscribe("a.*", box)
            await bus.on_boot_complete()
            await make_plugin(bus).publish("a.b", {})
            await box.wait(1)
    assert any(e["event"] == "event_bus_nats_interest_stream" for e in logs)


# -- publishing ------------------------------------------------------------------------------


async def test_nats_publish_refused_by_jetstream_is_nats_unavailable(
    nats_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JetStream answering an error (not 503) is NatsUnavailable at once, naming the event."""
    async with nats_bus() as bus:
        error = nats.js.errors.BadRequestError(code=400, description="no")
        monkeypatch.setattr(nats_backend.NatsBackend, "_jetstream_publish", refusing(error))
        with pytest.raises(NatsUnavailable, match=r"JetStream refused 'a\.b'"):
            await make_plugin(bus).publish("a.b", {})


async def test_nats_publish_on_a_closed_connection_is_bus_closed(
    nats_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection nats-py reports closed makes publish raise BusClosed at once."""
    async with nats_bus() as bus:
        error = nats.errors.ConnectionClosedError()
        monkeypatch.setattr(nats_backend.NatsBackend, "_jetstream_publish", refusing(error))
        with pytest.raises(BusClosed, match="not published"):
            await make_plugin(bus).publish("a.b", {})


async def test_nats_publish_retries_jetstream_unavailable_until_the_timeout(
    nats_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JetStream answering 503 (its store closing at shutdown) is retried; past
    EVENT_BUS_PUBLISH_TIMEOUT it is PublishTimeout naming the last error."""
    calls: list[str] = []
    async with nats_bus(EVENT_BUS_PUBLISH_TIMEOUT=0.3) as bus:
        error = nats.js.errors.ServiceUnavailableError(code=503, description="closing")
        monkeypatch.setattr(nats_backend.NatsBackend, "_jetstream_publish", refusing(error, calls))
        with pytest.raises(PublishTimeout, match="ServiceUnavailableError"):
            await make_plugin(bus).publish("a.b", {})
    assert len(calls) > 1


async def test_nats_publish_after_the_backend_closed_is_bus_closed(
    nats_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish still retrying when the backend closes stops with BusClosed."""
    async with nats_bus(EVENT_BUS_PUBLISH_TIMEOUT=30) as bus:
        backend = nats_backend_of(bus)

        async def closing(self: Any, subject: str, payload: bytes = b"", **kw: Any) -> Any:
            backend._closed = True  # closed meanwhile
            raise nats.errors.TimeoutError

        monkeypatch.setattr(nats_backend.NatsBackend, "_jetstream_publish", closing)
        with pytest.raises(BusClosed, match="closed"):
            await make_plugin(bus).publish("a.b", {})
        backend._closed = False


async def test_nats_jetstream_publish_raises_what_js_publish_raises(
    nats_bus: BusFactory, make_plugin: PluginFactory
) -> None:
    """The backend's own JetStream publish answers as nats-py's ``js.publish`` does: a subject
    no stream takes is NoStreamResponseError, a refusal an APIError, no answer in time a
    TimeoutError, and a stored event returns; nothing is left waiting."""
    async with nats_bus() as bus:
        await bus.on_boot_complete()
        backend = nats_backend_of(bus)
        stream = backend._settings.stream
        publish = backend._jetstream_publish
        await publish(f"{stream}.a.b", b"x", timeout=2, headers={"Nats-Msg-Id": "one"})
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await publish(f"nowhere_{stream}.a", b"x", timeout=2, headers={})
        with pytest.raises(nats.js.errors.APIError, match="expected stream"):
            await publish(
                f"{stream}.a.b", b"x", timeout=2, headers={"Nats-Expected-Stream": "another"}
            )
        with pytest.raises(nats.errors.TimeoutError):
            await publish(f"{stream}.a.b", b"x", timeout=0, headers={})
        assert backend._stores == {}
        jsm = backend._client().jsm()

        async def both_stored() -> bool:  # "one", and the one answered too late (sent all the same)
            return bool((await jsm.stream_info(stream)).state.messages == 2)

        await eventually(both_stored, interval=0.01)


async def test_nats_dead_letter_not_stored_leaves_the_event_unacked(
    nats_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a failed event's dead letter cannot be stored, the event is not acked (JetStream
    offers it again after the ack wait) and the backend forgets it."""
    publish = nats_backend.NatsBackend._jetstream_publish

    async def no_dead_letters(self: Any, subject: str, payload: bytes = b"", **kw: Any) -> Any:
        if "._dlq." in subject:
            raise nats.js.errors.BadRequestError(code=400, description="full")
        return await publish(self, subject, payload, **kw)

    monkeypatch.setattr(nats_backend.NatsBackend, "_jetstream_publish", no_dead_letters)
    runs: list[Event] = []

    async def failing(event: Event) -> None:
        runs.append(event)
        raise RuntimeError("always")

    async with nats_bus(EVENT_BUS_RETRY_BACKOFF=0) as bus:
        await make_plugin(bus, "shop.F").subscribe("a.*", failing, retries=0)
        await bus.on_boot_complete()
        await make_plugin(bus).publish("a.b", {})
        acks = nats_backend_of(bus).acks
        await eventually(lambda: runs and not acks.held and not acks.dead_letters)
        binding = next(iter(nats_backend_of(bus)._bindings.values()))
        assert binding.handled.working == set()
        assert binding.handled.done == {}


# -- trimming --------------------------------------------------------------------------------


async def test_nats_trim_removes_what_every_consumer_acked_listing_page_by_page(
    nats_bus: BusFactory,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Consumers listed over several pages: once all acked, trim removes every event."""
    monkeypatch.setattr(nats_backend, "_CONSUMERS_PAGE", 1)
    async with nats_bus() as bus:
        boxes = [inbox(), inbox()]
        await make_plugin(bus, "shop.A").subscribe("a.*", boxes[0])
        await make_plugin(bus, "shop.B").subscribe("a.*", boxes[1])
        await bus.on_boot_complete()
        await make_plugin(bus).publish("a.b", {})
        for box in boxes:
            await box.wait(1)
        backend = nats_backend_of(bus)
        await eventually(lambda: not backend.acks.held)
        jsm = backend._client().jsm()
        stream = nats_backend_of(bus)._settings.stream

        async def empty() -> bool:
            await backend.trim()
            return (await jsm.stream_info(stream)).state.messages == 0

        await eventually(empty, timeout=10, interval=0.01)


async def test_nats_trim_removes_nothing_when_consumers_change_while_listing(
    nats_bus: BusFactory,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Listing over pages that disagrees with the consumer count removes nothing this time."""
    monkeypatch.setattr(nats_backend, "_CONSUMERS_PAGE", 1)
    async with nats_bus() as bus:
        boxes = [inbox(), inbox()]
        await make_plugin(bus, "shop.A").subscribe("a.*", boxes[0])
        await make_plugin(bus, "shop.B").subscribe("a.*", boxes[1])
        await bus.on_boot_complete()
        backend = nats_backend_of(bus)
        jsm = backend._client().jsm()
        stream = backend._settings.stream
        listed = jsm.consumers_info

        async def twice(name: str, offset: int | None = None) -> Any:
            return [*await listed(name, offset), *await listed(name, offset)]

        monkeypatch.setattr(
            type(jsm), "consumers_info", lambda self, name, offset=None: twice(name, offset)
        )
        await make_plugin(bus).publish("a.b", {})
        for box in boxes:
            await box.wait(1)
        await eventually(lambda: not backend.acks.held)
        first = (await jsm.stream_info(stream)).state.first_seq
        assert await backend.trim() == first
        assert (await jsm.stream_info(stream)).state.messages == 1


async def test_nats_trim_failure_is_logged_and_tried_again(
    nats_bus: BusFactory, make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trim NATS does not answer is a warning; the loop goes on."""
    failures: list[int] = []

    async def timing_out(self: Any) -> int:
        failures.append(1)
        raise nats.errors.TimeoutError

    monkeypatch.setattr(nats_backend, "_TRIM_EVERY", 0.0)
    monkeypatch.setattr(nats_backend.NatsBackend, "trim", timing_out)
    with structlog.testing.capture_logs() as logs:
        async with nats_bus() as bus:
            publisher = make_plugin(bus)
            await publisher.publish("a.b", {})
            await eventually(lambda: failures)
            await publisher.publish("a.b", {})
            await eventually(lambda: len(failures) > 1)
    assert any(e["event"] == "event_bus_nats_trim_failed" for e in logs)


# -- what arrives ----------------------------------------------------------------------------


async def test_nats_unreadable_reply_and_request_are_logged_and_dropped(
    nats_bus: BusFactory, make_plugin: PluginFactory, client: Any
) -> None:
    """A reply or a request that is not a msgpack frame is logged and dropped (the good
    reply after it still counts); a request without a reply subject is ignored."""

    async def quote(event: Event) -> Any:
        return 2.5

    async def responder(msg: Any) -> None:
        await client.publish(msg.reply, b"\xc1")
        await client.publish(msg.reply, encode_reply(CLAIM, "raw"))
        await client.publish(msg.reply, encode_reply(VALUE, "raw", 7))

    with structlog.testing.capture_logs() as logs:
        async with nats_bus() as bus:
            await make_plugin(bus, "shop.Pricing").subscribe("price.quote", quote)
            await bus.on_boot_complete()
            subjects = Subjects(nats_backend_of(bus)._settings.stream)
            await client.subscribe(subjects.request("raw.quote"), cb=responder)
            await client.flush()
            assert await make_plugin(bus).request("raw.quote", {}) == 7
            await client.publish(subjects.request("price.quote"), b"\xc1", reply="nowhere")
            await client.publish(subjects.request("price.quote"), b"\xc1")
            await client.flush()
            await eventually(lambda: any(e["event"] == "event_bus_nats_bad_request" for e in logs))
            assert await make_plugin(bus).request("price.quote", {}) == 2.5
    assert any(e["event"] == "event_bus_nats_bad_reply" for e in logs)


async def test_nats_failing_receive_is_logged_and_the_rest_flows(
    nats_bus: BusFactory,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error taking an event or a request in is logged (the event is left unacked, the
    requester times out); the events after it are handled."""
    broken = {"event": True}

    def event_once(data: bytes) -> Any:  # the first event breaks while it is taken in
        if broken.pop("event", False):
            raise RuntimeError("event")
        return decode_event(data)

    async def request_fails(self: Any, binding: Any, msg: Any) -> None:
        raise RuntimeError("request")

    monkeypatch.setattr(nats_backend, "decode_event", event_once)
    monkeypatch.setattr(nats_backend.NatsBackend, "_receive_request", request_fails)
    with structlog.testing.capture_logs() as logs:
        async with nats_bus() as bus:
            box = inbox()
            await make_plugin(bus, "shop.L").subscribe("a.*", box)
            await bus.on_boot_complete()
            publisher = make_plugin(bus)
            await publisher.publish("a.b", {"n": 1})
            await publisher.publish("a.b", {"n": 2})
            await box.wait(1)
            backend = nats_backend_of(bus)
            binding = next(iter(backend._bindings.values()))
            msg: Any = SimpleNamespace(subject="s", reply="r", data=b"")
            await backend._on_request(binding, msg)
    assert [e.payload["n"] for e in box.events] == [2]
    assert sum(e["event"] == "event_bus_nats_receive_failed" for e in logs) == 2


# -- joining and leaving ---------------------------------------------------------------------


async def test_nats_consumer_that_fails_to_bind_is_retried(
    nats_bus: BusFactory,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Creating the consumer failing (NATS timing out) is logged and retried until it binds."""
    subscribe = nats_backend.NatsBackend._subscribe
    failures = [nats.errors.TimeoutError()]

    async def flaky(self: Any, binding: Any) -> None:
        if failures:
            raise failures.pop()
        await subscribe(self, binding)

    monkeypatch.setattr(nats_backend, "_SETUP_RETRY", (0.01, 0.01))
    monkeypatch.setattr(nats_backend.NatsBackend, "_subscribe", flaky)
    with structlog.testing.capture_logs() as logs:
        async with nats_bus() as bus:
            box = inbox()
            await make_plugin(bus, "shop.L").subscribe("a.*", box)
            backend = nats_backend_of(bus)
            await eventually(lambda: all(b.subs for b in backend._bindings.values()))
            await make_plugin(bus).publish("a.b", {})
            await box.wait(1)
    assert any(e["event"] == "event_bus_nats_subscribe_failed" for e in logs)


async def test_nats_unconfirmed_join_and_failing_leave_are_warnings(
    nats_bus: BusFactory,
    make_plugin: PluginFactory,
    inbox: InboxFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flush that fails after joining and a drain that fails when leaving are logged;
    the subscription works and the bus still shuts down."""
    with structlog.testing.capture_logs() as logs:
        async with nats_bus() as bus:
            nc = nats_backend_of(bus)._nc
            assert nc is not None

            async def failing_flush(timeout: int = 2) -> None:
                raise nats.errors.TimeoutError

            monkeypatch.setattr(nc, "flush", failing_flush)
            box = inbox()
            await make_plugin(bus, "shop.L").subscribe("a.*", box)
            await bus.on_boot_complete()
            await make_plugin(bus).publish("a.b", {})
            await box.wait(1)
            for binding in nats_backend_of(bus)._bindings.values():
                for sub in binding.subs:

                    async def failing_drain() -> None:
                        raise nats.errors.ConnectionDrainingError

                    monkeypatch.setattr(sub, "drain", failing_drain)
    events = {e["event"] for e in logs}
    assert {"event_bus_nats_subscribe_unconfirmed", "event_bus_nats_unsubscribe_failed"} <= events
