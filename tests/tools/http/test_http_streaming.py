"""add_sse and add_websocket: long-lived responses owned by plugins."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from microcore.tooling import HookError, Owner

from .conftest import Serve

STREAMS = {
    "domains/a/__init__.py": "",
    "domains/a/probe.py": """
    import asyncio
    stopped = asyncio.Event()
    """,
    "domains/a/plugins/stream_plugin.py": """
    import asyncio
    from microcore import Plugin
    from domains.a import probe

    class StreamPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_sse("/count", self.count)
            self.http.add_sse("/forever", self.forever)
            self.http.add_sse("/broken", self.broken)
            self.http.add_websocket("/echo/{room}", self.echo)
            self.http.add_websocket("/crash", self.crash)

        async def count(self, data, context):
            for n in range(int(data.get("n", 3))):
                yield {"n": n}
            yield "plain\\ntext"
            yield context.event({"done": True}, event="end", id="99", retry=1000)

        async def forever(self, data, context):
            try:
                n = 0
                while True:
                    yield n
                    n += 1
                    await asyncio.sleep(0)
            finally:
                probe.stopped.set()

        async def broken(self, data, context):
            yield 1
            raise RuntimeError("stream broke")

        async def echo(self, websocket):
            await websocket.accept()
            room = websocket.path_params["room"]
            async for message in websocket.iter_json():
                await websocket.send_json({"room": room, "echo": message})

        async def crash(self, websocket):
            await websocket.accept()
            raise RuntimeError("ws bug")
    """,
}


def parse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            fields[key] = fields[key] + "\n" + value if key in fields else value
        events.append(fields)
    return events


async def test_sse_streams_each_yielded_value_as_an_event(serve: Serve) -> None:
    """Each value an SSE generator yields is one event; JSON unless a string."""
    served = await serve(STREAMS)
    response = await served.client.get("/count?n=2")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert parse_events(response.text) == [
        {"data": '{"n":0}'},
        {"data": '{"n":1}'},
        {"data": "plain\ntext"},
        {"event": "end", "id": "99", "retry": "1000", "data": '{"done":true}'},
    ]


async def test_head_on_a_stream_answers_its_headers_and_ends(serve: Serve) -> None:
    """HEAD on an SSE route answers the stream's headers at once, without running the
    generator (a stream that never ends would otherwise hold the connection)."""
    served = await serve(STREAMS)
    probe = sys.modules["domains.a.probe"]
    with anyio.fail_after(5):
        response = await served.client.head("/forever")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.content == b""
    assert not probe.stopped.is_set()  # the generator never started


async def test_sse_client_disconnect_stops_the_generator(serve: Serve) -> None:
    """When the client disconnects, the generator is cancelled and its cleanup runs."""
    served = await serve(STREAMS)
    probe = sys.modules["domains.a.probe"]
    disconnect = anyio.Event()
    bodies: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if len(bodies) >= 5:
                disconnect.set()

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/forever",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }
    with anyio.fail_after(5):
        await served.running.app(scope, receive, send)
        await probe.stopped.wait()
    assert bodies[0] == b"data: 0\n\n"


async def test_sse_generator_error_ends_stream_with_error_event(serve: Serve) -> None:
    """An exception inside the generator ends the stream with an error event naming an id."""
    served = await serve(STREAMS)
    response = await served.client.get("/broken")
    events = parse_events(response.text)
    assert events[0] == {"data": "1"}
    assert events[1]["event"] == "error"
    assert '"code":"internal_error"' in events[1]["data"]


async def test_sse_sync_or_plain_coroutine_is_refused(serve: Serve) -> None:
    """add_sse needs an async generator function."""
    served = await serve({})
    handle = served.http.bind(Owner("tools.test"))

    async def not_a_generator(data: Any, context: Any) -> Any:  # pragma: no cover - never called
        return None

    with pytest.raises(HookError, match="async generator"):
        handle.add_sse("/x", not_a_generator)


class FakeSocket:
    """Drives the ASGI websocket protocol from a test."""

    def __init__(self, incoming: list[dict[str, Any]]) -> None:
        self.incoming = [{"type": "websocket.connect"}, *incoming]
        self.sent: list[dict[str, Any]] = []
        self.done = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await self.done.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.done.set()


def ws_scope(path: str) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": path,
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "scheme": "ws",
        "server": ("testserver", 80),
        "subprotocols": [],
    }


async def test_websocket_handler_gets_path_params_and_messages(serve: Serve) -> None:
    """A websocket route accepts, sees its path params and exchanges JSON messages."""
    served = await serve(STREAMS)
    socket = FakeSocket(
        [
            {"type": "websocket.receive", "text": '{"hi": 1}'},
            {"type": "websocket.disconnect", "code": 1000},
        ]
    )
    with anyio.fail_after(5):
        await served.running.app(ws_scope("/echo/lobby"), socket.receive, socket.send)
    assert socket.sent[0] == {"type": "websocket.accept", "subprotocol": None, "headers": []}
    assert socket.sent[1]["text"] == '{"room":"lobby","echo":{"hi":1}}'


async def test_websocket_unknown_path_is_closed(serve: Serve) -> None:
    """A websocket to a path nobody serves is closed at once."""
    served = await serve(STREAMS)
    socket = FakeSocket([])
    await served.running.app(ws_scope("/nowhere"), socket.receive, socket.send)
    assert socket.sent == [{"type": "websocket.close", "code": 1000}]


async def test_websocket_handler_error_closes_with_1011(serve: Serve) -> None:
    """An exception in a websocket handler closes the socket with 1011 and is logged."""
    served = await serve(STREAMS)
    socket = FakeSocket([])
    with anyio.fail_after(5):
        await served.running.app(ws_scope("/crash"), socket.receive, socket.send)
    assert socket.sent[-1]["type"] == "websocket.close"
    assert socket.sent[-1]["code"] == 1011


async def test_websocket_and_sse_vanish_with_their_plugin(serve: Serve) -> None:
    """Unloading the plugin removes its websocket and SSE routes."""
    served = await serve(STREAMS)
    await served.kernel.unload("a.StreamPlugin")
    assert (await served.client.get("/count")).status_code == 404
    socket = FakeSocket([])
    await served.running.app(ws_scope("/echo/x"), socket.receive, socket.send)
    assert socket.sent == [{"type": "websocket.close", "code": 1000}]
