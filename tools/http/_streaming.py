"""Long-lived responses: server-sent event streams and websocket routes.

An SSE handler is an async generator ``async def stream(self, data, context)``;
every value it yields is one event (``context.event(...)`` adds a name, id or
retry hint). The stream ends when the generator returns, and the generator is
cancelled when the client disconnects, or when the plugin version that serves
it retires or the server shuts down (``_streams.py``): then the response ends
cleanly and the client reconnects to what serves now. A comment line is sent
every ``HTTP_SSE_PING`` seconds so proxies keep the connection open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import msgspec
from starlette.responses import Response

from microcore.tooling import Owner, new_id

from ._context import Context, ServerSentEvent
from ._errors import error_json
from ._streams import CLEANUP_SECONDS, CLOSE_SECONDS, OpenStreams

__all__ = ("EventStream", "WebSocketRoute", "format_event")

_encode = msgspec.json.Encoder().encode
_PING = b": ping\n\n"


class WebSocketRoute:
    """A websocket handler ``async def chat(self, websocket)`` and the plugin that owns it."""

    __slots__ = ("auth", "handler", "owner", "path")

    def __init__(
        self,
        path: str,
        handler: Callable[[Any], Awaitable[None]],
        owner: Owner,
        *,
        auth: Any = None,
    ) -> None:
        self.path = path
        self.handler = handler
        self.owner = owner
        self.auth = auth


def format_event(item: Any) -> bytes:
    """One event in the ``text/event-stream`` format (strings as they are, the rest as JSON)."""
    if isinstance(item, ServerSentEvent):
        head = b""
        if item.event is not None:
            head += b"event: " + _one_line(item.event) + b"\n"
        if item.id is not None:
            head += b"id: " + _one_line(item.id) + b"\n"
        if item.retry is not None:
            head += b"retry: %d\n" % item.retry
        return head + _data(item.data) + b"\n"
    return _data(item) + b"\n"


def _data(value: Any) -> bytes:
    if isinstance(value, str):
        raw = value.encode("utf-8")
    elif isinstance(value, bytes):
        raw = value
    else:
        raw = _encode(value)
    return b"".join(b"data: " + line + b"\n" for line in raw.splitlines() or [b""])


def _one_line(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8")


class EventStream(Response):
    """Streams what an async generator yields until it ends or the client leaves."""

    media_type = "text/event-stream"

    def __init__(
        self, events: AsyncIterator[Any], context: Context, log: Any, ping: float = 15.0
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self._events = events
        self._context = context
        self._log = log
        self._ping = ping
        self._lock = anyio.Lock()
        self._finished = False  # the final body message went out: nothing may follow it
        self._streams: OpenStreams | None = None
        self._owner: Owner | None = None

    def track(self, streams: OpenStreams, owner: Owner | None) -> None:
        """Hold the stream open in ``streams`` under ``owner``: it ends when ``owner`` stops
        serving or the server shuts down (the app calls this before it serves the stream)."""
        self._streams, self._owner = streams, owner

    @classmethod
    def head(cls, context: Context) -> EventStream:
        """The answer to HEAD: a stream's headers, then at once its (empty) end."""

        async def nothing() -> AsyncIterator[Any]:
            return
            yield  # an async generator that yields nothing

        return cls(nothing(), context, None, ping=0)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._context.response_headers:
            self.raw_headers.extend(self._context.response_headers)
        streams = self._streams if self._streams is not None else OpenStreams()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                if self._ping > 0:
                    tg.start_soon(self._keep_alive, send)
                with streams.track(self._owner) as stream:
                    with stream.scope:  # cancelled by a reload or the shutdown
                        await self._pump(send)
                    with anyio.move_on_after(CLOSE_SECONDS):  # a client that stopped reading
                        await self._send(send, b"", more=False)
                tg.cancel_scope.cancel()
        finally:
            await self._close_events()

    async def _close_events(self) -> None:
        """Close the generator (its ``finally`` runs), shielded but bounded: a cleanup that
        hangs must not hold the connection, and with it a reload or the shutdown."""
        aclose = getattr(self._events, "aclose", None)
        if aclose is None:
            return
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + CLEANUP_SECONDS
            await aclose()
        if scope.cancelled_caught:
            self._log.warning(
                "event_stream_cleanup_timeout", path=self._context.path, seconds=CLEANUP_SECONDS
            )

    async def _pump(self, send: Any) -> None:
        try:
            async for item in self._events:
                await self._send(send, format_event(item), more=True)
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one stream
            error_id = new_id()
            self._log.error(
                "event_stream_failed", error_id=error_id, path=self._context.path, exc_info=exc
            )
            message = f"the event stream failed; the log has the details under error id {error_id}"
            payload = error_json("internal_error", message, error_id=error_id)
            await self._send(send, b"event: error\ndata: " + payload + b"\n\n", more=True)

    async def _send(self, send: Any, body: bytes, *, more: bool) -> None:
        async with self._lock:
            if self._finished:  # a keep-alive ping that queued behind the final message
                return
            self._finished = not more
            await send({"type": "http.response.body", "body": body, "more_body": more})

    async def _keep_alive(self, send: Any) -> None:
        while True:
            await anyio.sleep(self._ping)
            await self._send(send, _PING, more=True)

    @staticmethod
    async def _watch_disconnect(receive: Any, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
