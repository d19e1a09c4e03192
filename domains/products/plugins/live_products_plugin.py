"""GET /products/live: a server-sent event for every product created or deleted.

The subscription is a broadcast one: on NATS every replica gets each event, so
each replica feeds its own connected clients. A client too slow to keep up
misses events (a live view), never holds up the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from microcore import Event, Plugin
from tools.event_bus import EventBus
from tools.http import Context, Http, ServerSentEvent


class LiveProductsPlugin(Plugin):
    def __init__(self, http: Http, event_bus: EventBus) -> None:
        self.http, self.bus = http, event_bus
        self.clients: set[MemoryObjectSendStream[Event]] = set()

    async def on_boot(self) -> None:
        await self.bus.subscribe("product.*", self.on_change, broadcast=True)
        self.http.add_sse("/products/live", self.stream, tags=["products"])

    async def on_change(self, event: Event) -> None:
        for client in tuple(self.clients):
            with contextlib.suppress(anyio.WouldBlock):  # 16 events behind: it misses this one
                client.send_nowait(event)

    async def stream(
        self, data: dict[str, Any], context: Context
    ) -> AsyncIterator[ServerSentEvent]:
        """Products created and deleted, as they happen"""
        send, receive = anyio.create_memory_object_stream[Event](16)
        self.clients.add(send)
        try:
            async with receive:
                async for event in receive:
                    yield context.event(event.payload, event=event.name, id=event.id)
        finally:
            self.clients.discard(send)
            send.close()
