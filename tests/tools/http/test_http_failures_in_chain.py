"""Failures around plugin middleware and streams: a request that fails or goes away behaves
the same with and without middleware, and a stream never writes after its end."""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from tests.support import eventually
from tools.http._context import Context
from tools.http._streaming import EventStream

from .conftest import Serve

PASS_THROUGH = {
    "domains/a/plugins/mw_plugin.py": """
    from microcore import Plugin, RequestTimeout

    class MwPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_middleware(self.passthrough)
            self.http.add_endpoint("/items", "POST", self.create)
            self.http.add_endpoint("/login", "POST", self.login)

        async def passthrough(self, context, call_next):
            if context.headers.get("x-bus-timeout"):
                # e.g. an auth middleware asking another service over the bus
                raise RequestTimeout("auth.check got no reply within 5.0 s")
            return await call_next()

        async def create(self, data, context):
            return {"ok": True}

        async def login(self, data, context):
            context.set_cookie("session", "granted")
            raise RuntimeError("failed after setting the cookie")
    """,
}

NO_MIDDLEWARE = {
    "domains/a/plugins/plain_plugin.py": """
    from microcore import Plugin

    class PlainPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/items", "POST", self.create)
            self.http.add_endpoint("/login", "POST", self.login)

        async def create(self, data, context):
            return {"ok": True}

        async def login(self, data, context):
            context.set_cookie("session", "granted")
            raise RuntimeError("failed after setting the cookie")
    """,
}


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


async def _post_then_disconnect(app: Any) -> list[dict[str, Any]]:
    """A client that announces a body and goes away before sending it."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _scope("/items", [(b"content-length", b"10"), (b"content-type", b"application/json")])
    await app(scope, receive, send)
    return sent


async def test_disconnect_while_reading_body_is_silent_without_middleware(serve: Serve) -> None:
    """A client that leaves mid-upload gets nothing, and nothing is logged as a failure."""
    served = await serve(NO_MIDDLEWARE)
    with structlog.testing.capture_logs() as logs:
        sent = await _post_then_disconnect(served.http.app)
    assert sent == []
    assert [e for e in logs if e["event"] == "request_failed"] == []


async def test_disconnect_while_reading_body_is_silent_with_middleware(serve: Serve) -> None:
    """The same with plugin middleware in the chain: no 500 to nobody, no failure logged."""
    served = await serve(PASS_THROUGH)
    with structlog.testing.capture_logs() as logs:
        sent = await _post_then_disconnect(served.http.app)
    assert [e for e in logs if e["event"] == "request_failed"] == []
    assert sent == []


async def test_mapped_microcore_error_from_middleware_keeps_its_status(serve: Serve) -> None:
    """An error with its own status (RequestTimeout 504, NoResponder 503, HttpError 401)
    raised by middleware answers that status, as it does from a handler."""
    served = await serve(PASS_THROUGH)
    response = await served.client.post("/items", json={}, headers={"x-bus-timeout": "1"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


async def test_failed_handler_cookie_not_sent_without_middleware(serve: Serve) -> None:
    """A handler that set a cookie and then failed answers a bare 500, without the cookie."""
    served = await serve(NO_MIDDLEWARE)
    response = await served.client.post("/login", json={})
    assert response.status_code == 500
    assert "set-cookie" not in response.headers


async def test_failed_handler_cookie_not_sent_with_middleware(serve: Serve) -> None:
    """The same with plugin middleware in the chain: the failed request sets no cookie."""
    served = await serve(PASS_THROUGH)
    response = await served.client.post("/login", json={})
    assert response.status_code == 500
    assert "set-cookie" not in response.headers


async def test_sse_keep_alive_never_sends_after_the_final_body_message() -> None:
    """A keep-alive ping queued behind the stream's final message is never sent after it
    (the server would refuse the message and the stream would fail)."""

    async def events() -> Any:
        yield {"n": 1}

    scope = _scope("/stream", [])
    scope["method"] = "GET"
    context = Context(scope, None, "rid")  # type: ignore[arg-type]
    stream = EventStream(events(), context, structlog.get_logger("test"), ping=0.001)
    completed = False
    late: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal completed
        if completed:
            late.append(message)
            raise RuntimeError("Unexpected ASGI message sent, after response already completed.")
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            # The final write is slow (a slow client: the server awaits drain) until the
            # keep-alive ping has queued on the lock behind it.
            await eventually(lambda: stream._lock.statistics().tasks_waiting > 0)
            completed = True

    with anyio.fail_after(10):
        try:
            await stream(scope, receive, send)
        except BaseException as exc:
            raise AssertionError(f"EventStream raised {exc!r}; sent after its end: {late}") from exc
    assert late == []
