"""The guard's edges, unit by unit: one verifier at a time, other schemes, a crashing middleware."""

from __future__ import annotations

from typing import Any

import pytest

from microcore.tooling import ConfigurationError
from tools.http import Context
from tools.http._security import Guard, Rate

from .conftest import Boot
from .test_http_streaming import FakeSocket, ws_scope


def _context(headers: list[tuple[bytes, bytes]], method: str = "GET") -> Context:
    scope = {"type": "http", "method": method, "path": "/x", "headers": headers}

    async def receive() -> dict[str, Any]:  # pragma: no cover - never read
        return {"type": "http.disconnect"}

    context = Context(scope, receive, "rid")
    return context


def test_guard_other_schemes_fall_back_to_the_cookie() -> None:
    """'Authorization: Basic ...' is not a bearer token: the access_token cookie is used."""
    guard = Guard()
    guard.verifier = lambda token: {"sub": token}
    headers = [(b"authorization", b"Basic dXNlcjpwdw=="), (b"cookie", b"access_token=c00kie")]
    context = _context(headers)
    context.guard = guard
    assert context.identity == {"sub": "c00kie"}
    assert _context([(b"authorization", b"Basic dXNlcjpwdw==")]).identity is None


async def test_guard_limit_without_a_state_store_lets_requests_through() -> None:
    """A rate whose state tool is gone (refused at registration otherwise) fails no request."""
    await Guard().limit(Rate(1, 60, "1/minute"), _context([]), "GET /x")


async def test_http_tool_takes_one_verifier_at_a_time(boot: Boot) -> None:
    """A second verifier is refused; the first one's remove() leaves a later one alone."""
    running, _ = await boot({})
    http: Any = running.kernel.tool("http")
    with pytest.raises(ConfigurationError, match="already installed"):
        http.use_token_verifier(lambda token: None)
    guard = http.app.guard
    first = guard.verifier
    guard.verifier = None
    second = http.use_token_verifier(lambda token: None)
    guard.verifier = first
    second()  # not the installed one: nothing changes
    assert guard.verifier is first


CRASHING = {
    "domains/a/plugins/crash_plugin.py": """
    from microcore import Plugin

    class CrashPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_middleware(self.crash)
            self.http.add_websocket("/ws", self.chat)

        async def crash(self, context, call_next):
            if context.headers.get("x-crash"):
                raise RuntimeError("middleware bug")
            return await call_next()

        async def chat(self, websocket):  # pragma: no cover - never reached
            await websocket.accept()
    """
}


async def test_websocket_middleware_crash_closes_with_1011(boot: Boot) -> None:
    """A middleware that raises (not an HttpError) around a websocket closes it with 1011."""
    running, _ = await boot(CRASHING)
    socket = FakeSocket([])
    scope = ws_scope("/ws")
    scope["headers"] = [(b"x-crash", b"1")]
    await running.app(scope, socket.receive, socket.send)
    assert socket.sent[0]["type"] == "websocket.close"
    assert socket.sent[0]["code"] == 1011


async def test_guard_limit_answers_503_when_the_store_is_down() -> None:
    """A rate-limited route whose state store fails answers 503 (never uncounted requests)."""
    from microcore.tooling import MicroCoreError
    from tools.http import HttpError

    class Down:
        async def incr(self, *args: Any, **kwargs: Any) -> int:
            raise MicroCoreError("redis is down")

    guard = Guard()
    guard.state = Down()  # type: ignore[assignment]  # a stand-in store
    with pytest.raises(HttpError) as raised:
        await guard.limit(Rate(1, 60, "1/minute"), _context([]), "GET /x")
    assert raised.value.http_status == 503
    assert raised.value.headers == {"Retry-After": "1"}
