"""The live feed behind ``/system/feed``: requests and events, pushed to every connected client.

Bounded by design, so a slow or stalled browser costs nothing but its own view:

* each client has a ring of ``SYSTEM_FEED_BUFFER`` items (default 256). Pushing
  never waits: when the ring is full the *oldest* item is dropped and counted;
  the client is told how many it missed (an ``event: dropped`` message) the next
  time it reads, and ``microcore_feed_dropped_total`` counts them all;
* an item is encoded once (JSON) whatever the number of clients, and only when
  at least one client is connected: with nobody watching a push is one check;
* at most ``SYSTEM_FEED_CLIENTS`` clients (default 16); one more is told so
  (``event: error``) and the stream ends.

Pushes come from the http observer and the bus tap, synchronously, on the
serving tasks; the SSE stream of each client drains its ring at its own pace.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from microcore import Event

from ._trace import event_row

if TYPE_CHECKING:
    from tools.http import Context
    from tools.http.http_tool import Exchange

__all__ = ("Feed", "FeedClient")

_encode = msgspec.json.Encoder().encode
Item = tuple[str, bytes]  # (SSE event name, encoded JSON)


class FeedClient:
    """One connected browser: its ring of pending items and what it missed."""

    __slots__ = ("buffer", "dropped", "wake")

    def __init__(self, size: int) -> None:
        self.buffer: deque[Item] = deque(maxlen=size)
        self.dropped = 0  # items dropped since the client last read
        self.wake = anyio.Event()

    def put(self, item: Item) -> bool:
        """Queue ``item``, dropping the oldest when full (True when one was dropped)."""
        buffer = self.buffer
        full = len(buffer) == buffer.maxlen
        if full:
            self.dropped += 1
        buffer.append(item)
        self.wake.set()
        return full

    async def take(self) -> tuple[list[Item], int]:
        """Wait for items; return all of them and how many were dropped since the last take."""
        while not self.buffer:
            await self.wake.wait()
            self.wake = anyio.Event()
        items = list(self.buffer)
        self.buffer.clear()
        dropped, self.dropped = self.dropped, 0
        return items, dropped


class Feed:
    """Every connected client; what the system tool pushes goes to all of them."""

    def __init__(
        self,
        *,
        buffer: int = 256,
        max_clients: int = 16,
        payloads: bool = True,
        trace_url: str | None = None,
        on_watch: Callable[[bool], object] | None = None,
    ) -> None:
        self.buffer = buffer
        self.max_clients = max_clients
        self.payloads = payloads
        self.trace_url = trace_url  # SYSTEM_TRACE_URL: where the dashboard links a trace id
        self._on_watch = on_watch  # called with True for the first client, False after the last
        self.clients: list[FeedClient] = []
        self.dropped = 0  # over all clients, since boot

    def stats(self) -> dict[str, int]:
        return {"clients": len(self.clients), "dropped": self.dropped}

    # -- pushing (sync, never waits) -----------------------------------------------

    def push(self, kind: str, item: dict[str, Any]) -> None:
        """Send ``item`` as an ``event: <kind>`` message to every client."""
        if not self.clients:
            return
        encoded = (kind, _encode(item))
        for client in self.clients:
            if client.put(encoded):
                self.dropped += 1

    def request(self, exchange: Exchange) -> None:
        """Push one answered request (an http ``Exchange``)."""
        if not self.clients:
            return
        self.push(
            "request",
            {
                "method": exchange.method,
                "path": exchange.path,
                "route": exchange.route,
                "status": exchange.status,
                "duration_ms": round(exchange.duration * 1000, 3),
                "request_id": exchange.request_id,
                "owner": exchange.owner,
                "timestamp": time.time(),
            },
        )

    def event(self, event: Event) -> None:
        """Push one published event (payload hidden unless ``payloads``)."""
        if not self.clients:
            return
        self.push("event", event_row(event, payloads=self.payloads))

    # -- one client's stream ---------------------------------------------------------

    async def stream(self, context: Context) -> AsyncGenerator[Any, None]:
        """The SSE messages for one client until it disconnects (the generator is cancelled)."""
        if len(self.clients) >= self.max_clients:
            yield context.event(
                {
                    "code": "too_many_clients",
                    "message": f"the live feed serves at most {self.max_clients} clients "
                    "(SYSTEM_FEED_CLIENTS); close another dashboard or raise the limit",
                },
                event="error",
                retry=30_000,
            )
            return
        client = FeedClient(self.buffer)
        self.clients.append(client)
        if len(self.clients) == 1 and self._on_watch is not None:
            self._on_watch(True)
        try:
            yield context.event(
                {"buffer": self.buffer, "payloads": self.payloads, "trace_url": self.trace_url},
                event="ready",
                retry=2_000,
            )
            while True:
                items, dropped = await client.take()
                if dropped:
                    yield context.event({"dropped": dropped}, event="dropped")
                for kind, raw in items:
                    yield context.event(raw, event=kind)
        finally:
            self.clients.remove(client)
            if not self.clients and self._on_watch is not None:
                self._on_watch(False)
