"""Closing open streams: by owner on a reload, all at shutdown, on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import anyio
import pytest

from microcore.tooling import Owner
from tests.support import eventually
from tools.http._streams import Closed, OpenStreams, _chained, chain_exit_signals

from .conftest import Serve, Served
from .test_http_streaming import FakeSocket, ws_scope


def sse_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }


class Listener:
    """The receiving side of one SSE response: the bodies sent, and whether it ended."""

    def __init__(self, *, stall_after: int | None = None) -> None:
        self.bodies: list[bytes] = []
        self.ended = False
        self.first = anyio.Event()
        self.gone = anyio.Event()  # set to make the client disconnect
        self._stall_after = stall_after

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        if message["more_body"] and len(self.bodies) == self._stall_after:
            await anyio.sleep_forever()  # a client that stopped reading
        self.bodies.append(message["body"])
        self.first.set()
        self.ended = not message["more_body"]


def feed_owner() -> Owner:
    owner = Owner("a.FeedPlugin")
    owner.activate()
    return owner


def retire(served: Served, owner: Owner) -> None:
    """What a reload's commit does to the old version: released, then the tools told."""
    owner.mark_released()
    served.http.on_plugins_changed()


async def run_sse(
    served: Served, path: str, then: Callable[[], object], listener: Listener | None = None
) -> Listener:
    """GET ``path`` as a stream, call ``then()`` once its first event arrived, return the
    listener when the response is over."""
    listener = listener or Listener()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(served.running.app, sse_scope(path), listener.receive, listener.send)
            await listener.first.wait()
            then()
    return listener


async def forever(data: Any, context: Any) -> AsyncIterator[int]:
    yield 1
    await anyio.sleep_forever()


async def test_open_streams_close_only_the_owners_that_stopped_serving() -> None:
    """close_inactive closes the streams of released owners; others and ownerless stay open."""
    streams = OpenStreams()
    gone, kept = Owner("a.Old"), Owner("a.Kept")
    gone.activate()
    kept.activate()
    with streams.hold(gone) as old, streams.hold(kept) as new, streams.hold(None) as system:
        assert len(streams) == 3
        assert streams.close_inactive() == 0
        gone.mark_released()
        assert streams.close_inactive() == 1
        assert streams.close_inactive() == 0  # already closed: not counted twice
        assert (old.closed, new.closed, system.closed) == (Closed.RELOAD, None, None)
        old.close(Closed.SHUTDOWN)
        assert old.closed is Closed.RELOAD  # the first reason stays
        assert streams.close_all() == 2
        assert streams.close_all() == 0
        assert (new.closed, system.closed) == (Closed.SHUTDOWN, Closed.SHUTDOWN)
        await anyio.lowlevel.checkpoint()  # where the cancellation lands
    assert len(streams) == 0


async def test_open_streams_refuse_streams_of_retired_owners_and_after_shutdown() -> None:
    """A stream that starts for an owner no longer serving, or after close_all, closes at once."""
    streams = OpenStreams()
    released = Owner("a.Gone")
    released.mark_released()
    with streams.hold(released) as late:
        await anyio.lowlevel.checkpoint()
    assert late.closed is Closed.RELOAD
    assert late.scope.cancelled_caught
    streams.close_all()
    with streams.hold(None) as after:
        await anyio.lowlevel.checkpoint()
    assert after.closed is Closed.SHUTDOWN


async def test_sse_stream_closes_at_the_swap_with_a_clean_end(serve: Serve) -> None:
    """When its owner is swapped out, an open SSE response ends with its final empty body."""
    served = await serve({})
    owner = feed_owner()
    served.http.bind(owner).add_sse("/feed", forever)
    listener = await run_sse(served, "/feed", lambda: retire(served, owner))
    assert listener.bodies == [b"data: 1\n\n", b""]
    assert listener.ended


async def test_sse_stream_of_a_released_owner_ends_at_once(serve: Serve) -> None:
    """A stream that reaches a version already released (before the table swapped) ends at once."""
    served = await serve({})
    owner = feed_owner()
    served.http.bind(owner).add_sse("/feed", forever)
    owner.mark_released()  # the route table still routes to it: no refresh yet
    listener = Listener()
    with anyio.fail_after(5):
        await served.running.app(sse_scope("/feed"), listener.receive, listener.send)
    assert listener.bodies[-1] == b""
    assert listener.ended


async def test_event_stream_from_an_endpoint_closes_with_its_owner(serve: Serve) -> None:
    """http.event_stream(...) returned by a plain endpoint is closed with that endpoint's owner."""
    served = await serve({})
    owner = feed_owner()

    async def maybe_stream(data: Any, context: Any) -> Any:
        return served.http.event_stream(forever(data, context), context)

    served.http.bind(owner).add_endpoint("/maybe", "GET", maybe_stream)
    listener = await run_sse(served, "/maybe", lambda: retire(served, owner))
    assert listener.ended


class Countdown:
    """An async iterator that is not a generator: nothing to close when it ends."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __aiter__(self) -> Countdown:
        return self

    async def __anext__(self) -> int:
        if self.n == 0:
            raise StopAsyncIteration
        self.n -= 1
        return self.n


async def test_event_stream_of_a_plain_iterator_keeps_the_handlers_headers(serve: Serve) -> None:
    """event_stream over any async iterator streams it, with the headers the handler set."""
    served = await serve({})

    async def countdown(data: Any, context: Any) -> Any:
        context.set_header("x-feed", "countdown")
        return served.http.event_stream(Countdown(2), context)

    served.http.bind(feed_owner()).add_endpoint("/countdown", "GET", countdown)
    response = await served.client.get("/countdown")
    assert response.headers["x-feed"] == "countdown"
    assert response.text == "data: 1\n\ndata: 0\n\n"


async def test_sse_generator_cleanup_is_bounded(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator whose cleanup hangs is cut after CLEANUP_SECONDS: it holds nothing."""
    served = await serve({})
    monkeypatch.setattr(sys.modules["tools.http._streaming"], "CLEANUP_SECONDS", 0.01)
    owner = feed_owner()
    cleaned: list[bool] = []

    async def stubborn(data: Any, context: Any) -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            await anyio.sleep_forever()
            cleaned.append(True)  # pragma: no cover - the cleanup is cut first

    served.http.bind(owner).add_sse("/stubborn", stubborn)
    listener = Listener(stall_after=1)  # the generator waits at its second yield
    await run_sse(served, "/stubborn", lambda: retire(served, owner), listener)
    assert listener.bodies == [b"data: 1\n\n", b""]
    assert cleaned == []


async def test_sse_client_that_left_is_not_sent_the_end(serve: Serve) -> None:
    """A client that disconnects first ends its stream without a final message to nobody."""
    served = await serve({})
    owner = feed_owner()
    served.http.bind(owner).add_sse("/feed", forever)
    listener = Listener()
    await run_sse(served, "/feed", listener.gone.set, listener)
    assert listener.bodies == [b"data: 1\n\n"]
    assert len(served.http.app.streams) == 0


async def waiting_socket(websocket: Any) -> None:
    await websocket.accept()
    await anyio.sleep_forever()


async def run_socket(served: Served, path: str, then: Callable[[], Any]) -> FakeSocket:
    """Open a websocket on ``path``, call ``then()`` once it is accepted, return the socket."""
    socket = FakeSocket([])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(served.running.app, ws_scope(path), socket.receive, socket.send)
            await eventually(lambda: socket.sent)  # accepted
            result = then()
            if result is not None:
                await result
    return socket


async def test_websocket_closes_with_1012_when_its_version_retires(serve: Serve) -> None:
    """A reload closes the old version's websocket with 1012 (service restart) and a reason."""
    served = await serve({})
    owner = feed_owner()
    served.http.bind(owner).add_websocket("/live", waiting_socket)
    socket = await run_socket(served, "/live", lambda: retire(served, owner))
    assert socket.sent[-1] == {
        "type": "websocket.close",
        "code": 1012,
        "reason": "the plugin reloaded; reconnect",
    }


async def test_websocket_closes_with_1001_at_shutdown(serve: Serve) -> None:
    """Draining the http tool closes open websockets with 1001 (going away); later ones too."""
    served = await serve({})
    owner = feed_owner()
    served.http.bind(owner).add_websocket("/live", waiting_socket)
    socket = await run_socket(served, "/live", served.http.drain)
    assert socket.sent[-1]["code"] == 1001
    late = FakeSocket([])
    with anyio.fail_after(5):
        await served.running.app(ws_scope("/live"), late.receive, late.send)
    assert late.sent[-1]["type"] == "websocket.close"
    assert late.sent[-1]["code"] == 1001


async def test_websocket_the_handler_closed_is_not_closed_twice(serve: Serve) -> None:
    """A handler that closed its socket itself and then waits is cancelled; nothing more is sent."""
    served = await serve({})
    owner = feed_owner()

    async def closes_then_waits(websocket: Any) -> None:
        await websocket.accept()
        await websocket.close(code=4000)
        await anyio.sleep_forever()

    served.http.bind(owner).add_websocket("/closing", closes_then_waits)
    socket = await run_socket(served, "/closing", lambda: retire(served, owner))
    assert [m["type"] for m in socket.sent] == ["websocket.accept", "websocket.close"]
    assert socket.sent[-1]["code"] == 4000


class Recorder:
    """A Python signal handler standing in for uvicorn's: notes the signals it got."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)


async def test_exit_signals_close_streams_then_call_the_previous_handler() -> None:
    """SIGTERM and SIGINT run the callback in the loop and, once the closed streams have
    settled, the handler that was installed (uvicorn's shutdown fails websockets with 1012)."""
    previous = Recorder()
    before = {sig: signal.signal(sig, previous) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        called = anyio.Event()
        goodbyes_said = anyio.Event()
        restore = chain_exit_signals(called.set, goodbyes_said.wait)
        assert signal.getsignal(signal.SIGTERM) is not previous
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        with anyio.fail_after(5):
            await called.wait()
        await anyio.lowlevel.checkpoint()
        assert previous.signals == []  # the goodbyes are still on their way
        goodbyes_said.set()
        await eventually(lambda: previous.signals == [signal.SIGTERM, signal.SIGINT])
        restore()
        assert signal.getsignal(signal.SIGTERM) is previous
        assert signal.getsignal(signal.SIGINT) is previous
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


async def test_exit_signals_leave_default_handlers_and_foreign_ones_alone() -> None:
    """A default handler is not chained; restore leaves a handler someone installed later."""
    later = Recorder()
    before = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, signal.SIG_DFL),
        signal.SIGINT: signal.signal(signal.SIGINT, Recorder()),
    }
    try:
        restore = chain_exit_signals(lambda: None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGINT, later)
        restore()
        assert signal.getsignal(signal.SIGINT) is later
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


async def test_exit_signals_are_not_touched_outside_the_main_thread() -> None:
    """Off the main thread (where no signal arrives) nothing is installed."""
    handler = signal.getsignal(signal.SIGTERM)
    restore = await anyio.to_thread.run_sync(chain_exit_signals, lambda: None)
    restore()
    assert signal.getsignal(signal.SIGTERM) is handler


def test_exit_signal_after_the_loop_closed_still_reaches_the_previous_handler() -> None:
    """A signal that arrives after the event loop closed skips the callback, not the server."""
    loop = asyncio.new_event_loop()
    loop.close()
    previous = Recorder()
    on_signal = _chained(loop, lambda: None, previous)
    on_signal(signal.SIGTERM, None)
    assert previous.signals == [signal.SIGTERM]
