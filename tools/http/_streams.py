"""Open streams (server-sent events, websockets) and who closes them.

A stream is not a call the old version of a plugin must finish: it may stay
open for hours. So it is never counted with ``owner.enter()``; instead it holds
a cancel scope here, under its route's owner, and the http tool closes it when
that owner stops serving (a reload swapped it out, it was unloaded) or when the
server shuts down. A closed event stream ends its response cleanly and the
client (``EventSource``) reconnects to the new version; a closed websocket gets
code 1012 (service restart) on a reload and 1001 (going away) at shutdown.

uvicorn waits for open connections to finish *before* it tells the app to shut
down, so at shutdown the streams must close on the signal itself:
:func:`chain_exit_signals` runs a callback on SIGTERM and SIGINT before the
server's own handler.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from types import FrameType
from typing import Any

import anyio
import structlog

from microcore.tooling import Owner

__all__ = (
    "CLEANUP_SECONDS",
    "CLOSE_SECONDS",
    "Closed",
    "OpenStreams",
    "Stream",
    "chain_exit_signals",
)

CLOSE_SECONDS = 0.5
"""How long a closed stream may take to say goodbye (its last message, the close frame): half
of the 1 s in which a swap or a shutdown promises to have closed every stream, so a client
slow to take its goodbye still leaves room for the rest of the close."""
CLEANUP_SECONDS = 5.0
"""How long a stream's handler may take to clean up (an event generator's ``finally``)."""

_log = structlog.get_logger("microcore.http", tool="http")


class Closed(StrEnum):
    """Why the server closed a stream; a websocket client learns it from the close code."""

    RELOAD = "reload"  # its plugin version retired: 1012 service restart
    SHUTDOWN = "shutdown"  # the server stops: 1001 going away

    @property
    def websocket_code(self) -> int:
        return 1012 if self is Closed.RELOAD else 1001

    @property
    def reason(self) -> str:
        if self is Closed.RELOAD:
            return "the plugin reloaded; reconnect"
        return "the server is shutting down"


class Stream:
    """One open stream: the cancel scope that ends it and, once ended by us, why."""

    __slots__ = ("closed", "owner", "scope")

    def __init__(self, owner: Owner | None) -> None:
        self.owner = owner
        self.scope = anyio.CancelScope()
        self.closed: Closed | None = None

    def close(self, why: Closed) -> None:
        """End the stream (the first reason given is kept)."""
        if self.closed is None:
            self.closed = why
        self.scope.cancel()


class OpenStreams:
    """The streams open right now, by the owner of the route that serves each.

    >>> with streams.track(route.owner) as stream:
    ...     with stream.scope:
    ...         await serve_the_stream()   # cancelled when the owner stops serving
    ...     await say_goodbye(stream.closed)  # Closed.RELOAD, Closed.SHUTDOWN or None
    """

    def __init__(self) -> None:
        self._open: dict[Owner | None, set[Stream]] = {}
        self._ended: anyio.Event | None = None  # set when a stream ends (for settled)
        self.shutting_down = False

    def __len__(self) -> int:
        return sum(len(streams) for streams in self._open.values())

    @contextmanager
    def track(self, owner: Owner | None) -> Iterator[Stream]:
        """Track a stream of ``owner`` for the ``with`` block: its goodbye (the last message,
        the close frame) belongs inside the block, the serving that a close cuts short inside
        ``stream.scope``. :meth:`settled` waits for the block to end.

        A stream that starts after its owner stopped serving (or during shutdown) is
        closed at once: the client reconnects to what serves now.
        """
        stream = Stream(owner)
        if self.shutting_down:
            stream.close(Closed.SHUTDOWN)
        elif owner is not None and not owner.active:
            stream.close(Closed.RELOAD)
        streams = self._open.setdefault(owner, set())
        streams.add(stream)
        try:
            yield stream
        finally:
            streams.discard(stream)
            if not streams:
                del self._open[owner]
            if self._ended is not None:
                self._ended.set()
                self._ended = None

    @contextmanager
    def hold(self, owner: Owner | None) -> Iterator[Stream]:
        """:meth:`track` a stream of ``owner`` for the ``with`` block, which runs in its
        cancel scope (for a stream with no goodbye to say)."""
        with self.track(owner) as stream, stream.scope:
            yield stream

    async def settled(self) -> None:
        """Wait until every stream closed so far has ended, its goodbye said.

        The streams a swap closes need a few steps of the event loop for their goodbyes;
        what runs after a reload and holds the loop for a while (writing AI_CONTEXT.md)
        waits for this first, so it cannot hold those goodbyes past the 1 s promised."""
        while any(s.closed is not None for streams in self._open.values() for s in streams):
            self._ended = self._ended or anyio.Event()
            await self._ended.wait()

    def close_inactive(self) -> int:
        """Close the streams of every owner that no longer serves; returns how many."""
        closed = 0
        for owner in [o for o in self._open if o is not None and not o.active]:
            closed += self._close(owner, Closed.RELOAD)
        return closed

    def close_all(self) -> int:
        """Close every stream and every stream that starts from now on (shutdown)."""
        self.shutting_down = True
        return sum(self._close(owner, Closed.SHUTDOWN) for owner in list(self._open))

    def _close(self, owner: Owner | None, why: Closed) -> int:
        streams = [s for s in self._open.get(owner, ()) if s.closed is None]
        for stream in streams:
            stream.close(why)
        if streams:
            who = owner.identity if owner is not None else None
            _log.info("streams_closed", owner=who, streams=len(streams), reason=why.value)
        return len(streams)


Handler = Callable[[int, FrameType | None], Any]
_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def chain_exit_signals(
    callback: Callable[[], object], settled: Callable[[], Awaitable[None]] | None = None
) -> Callable[[], None]:
    """Run ``callback`` in the running event loop on SIGINT and SIGTERM, wait (at most
    ``CLOSE_SECONDS``) for ``settled()``, then call the handler that was there before
    (uvicorn's, which starts its shutdown); returns ``restore``.

    uvicorn installs its handlers before the app starts and, on a signal, waits for open
    connections to close before it shuts the app down: without this an open event stream
    would hold the shutdown forever. And its shutdown fails every open websocket with 1012
    at once: told first, it would beat the 1001 (going away) our close is still sending.
    Does nothing outside the main thread (signals are delivered there only) and leaves a
    signal alone whose handler is not a Python callable (default or ignored: nothing in
    this process would shut the app down gracefully). ``restore`` puts the previous
    handlers back where ours are still installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[signal.Signals, tuple[Handler, Handler]] = {}
    for signum in _EXIT_SIGNALS:
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue
        handler = _chained(loop, callback, previous, settled)
        signal.signal(signum, handler)
        installed[signum] = (handler, previous)

    def restore() -> None:
        for signum, (handler, previous) in installed.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)
        installed.clear()

    return restore


def _chained(
    loop: asyncio.AbstractEventLoop,
    callback: Callable[[], object],
    previous: Handler,
    settled: Callable[[], Awaitable[None]] | None = None,
) -> Handler:
    handing_over: set[asyncio.Task[None]] = set()  # held here until done (the loop does not)

    async def hand_over(signum: int, frame: FrameType | None) -> None:
        if settled is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(settled(), CLOSE_SECONDS)
        previous(signum, frame)

    def close(signum: int, frame: FrameType | None) -> None:
        callback()
        task = loop.create_task(hand_over(signum, frame))
        handing_over.add(task)
        task.add_done_callback(handing_over.discard)

    def on_signal(signum: int, frame: FrameType | None) -> Any:
        # a signal handler runs between two bytecodes of whatever the loop is doing:
        # hand the callback to the loop instead of cancelling scopes from here
        try:
            loop.call_soon_threadsafe(close, signum, frame)
        except RuntimeError:  # the loop is closed: nothing is left to close
            return previous(signum, frame)
        return None

    return on_signal
