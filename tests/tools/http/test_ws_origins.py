"""WebSocket origins: HTTP_WS_ORIGINS lists the pages that may open a websocket."""

from __future__ import annotations

from typing import Any

import anyio

from .conftest import Serve, Served

CHAT = {
    "domains/chat/plugins/chat_plugin.py": """
    from microcore import Plugin

    class ChatPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_websocket("/chat", self.chat)

        async def chat(self, websocket):
            await websocket.accept()
            await websocket.send_json({"hello": websocket.client.host})
            await websocket.close()
    """
}
ORIGINS = {"HTTP_WS_ORIGINS": "https://app.example.com, http://localhost:3000/"}


async def connect(served: Served, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    """Open ``/chat`` with ``headers`` over ASGI; what the app sent, in order."""
    incoming: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []
    closed = anyio.Event()

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            closed.set()

    scope = {
        "type": "websocket",
        "path": "/chat",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "scheme": "ws",
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    with anyio.fail_after(5):
        await served.running.app(scope, receive, send)
    return sent


async def test_ws_origin_not_listed_is_closed_1008_before_accept(serve: Serve) -> None:
    """A websocket from a page whose Origin is not in HTTP_WS_ORIGINS is closed with 1008 and
    never reaches the handler."""
    served = await serve(CHAT, settings=ORIGINS)
    for origin in (b"https://evil.example", b"null", b"https://app.example.com.evil.example"):
        sent = await connect(served, [(b"origin", origin)])
        assert sent == [{"type": "websocket.close", "code": 1008}], origin


async def test_ws_origin_listed_or_absent_is_served(serve: Serve) -> None:
    """A listed Origin (any case, with or without a trailing slash) is served, and so is a
    client that sends none (not a browser: no page to abuse)."""
    served = await serve(CHAT, settings=ORIGINS)
    for headers in (
        [(b"origin", b"https://app.example.com")],
        [(b"origin", b"HTTP://LOCALHOST:3000")],
        [],
    ):
        sent = await connect(served, headers)
        assert sent[0]["type"] == "websocket.accept", headers


async def test_ws_any_origin_without_the_setting(serve: Serve) -> None:
    """Without HTTP_WS_ORIGINS every origin may open a websocket."""
    served = await serve(CHAT)
    sent = await connect(served, [(b"origin", b"https://elsewhere.example")])
    assert sent[0]["type"] == "websocket.accept"


async def test_ws_origins_setting_must_be_origins(serve: Serve) -> None:
    """An entry that is not scheme://host fails the http tool with an example."""
    served = await serve(CHAT, settings={"HTTP_WS_ORIGINS": "app.example.com"})
    record = served.kernel.tools["http"]
    assert record.status == "failed"
    assert "'app.example.com'" in record.error.message
    assert "e.g. HTTP_WS_ORIGINS=https://" in record.error.message


async def test_ws_client_comes_through_trusted_proxies(serve: Serve) -> None:
    """A websocket's client address follows HTTP_TRUSTED_PROXIES as HTTP requests do."""
    served = await serve(CHAT, settings={"HTTP_TRUSTED_PROXIES": "127.0.0.1"})
    sent = await connect(served, [(b"x-forwarded-for", b"198.51.100.7")])
    assert sent[1]["text"] == '{"hello":"198.51.100.7"}'
