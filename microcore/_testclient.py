"""The ``client`` fixture's class: an ``httpx.AsyncClient`` over the app, plus ``sse``.

httpx's ASGI transport waits for a response body to end, so it cannot read an
endless server-sent-event stream. :meth:`TestClient.sse` drives the app over raw
ASGI instead and parses events as they arrive::

    async with client.sse("/products/live") as stream:
        await client.post("/products", json={"name": "Pen", "price": 2.5})
        message = await stream.next(timeout=1.0)
        assert message.event == "product.created" and message.json()["name"] == "Pen"

Leaving the block disconnects (the app's generator is cancelled). Imported by the
fixture only, since httpx is a test dependency.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream

__all__ = ("SseMessage", "SseStream", "TestClient")

_BUFFER = 64  # ASGI messages held before the app's ``send`` waits (backpressure)


class SseMessage:
    """One server-sent event: ``event`` (name), ``data`` (text), ``id``, ``retry``."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, data: str, event: str | None, id: str | None, retry: int | None) -> None:
        self.data, self.event, self.id, self.retry = data, event, id, retry

    def json(self) -> Any:
        """``data`` decoded as JSON."""
        return json.loads(self.data)

    def __repr__(self) -> str:
        return f"SseMessage(event={self.event!r}, id={self.id!r}, data={self.data!r})"


class SseStream:
    """An open event stream: ``status_code``, ``headers``, ``await next()``, ``async for``."""

    def __init__(
        self, status_code: int, headers: httpx.Headers, body: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self._body = body
        self._text = ""

    async def next(self, timeout: float = 1.0) -> SseMessage:
        """The next event; ``TimeoutError`` after ``timeout`` s, ``EOFError`` when it ended."""
        with anyio.fail_after(timeout):
            while True:
                block, sep, rest = self._text.replace("\r\n", "\n").partition("\n\n")
                if sep:
                    self._text = rest
                    message = _parse(block)
                    if message is not None:
                        return message
                    continue
                try:
                    chunk = await self._body.receive()
                except anyio.EndOfStream:
                    raise EOFError("the event stream ended") from None
                self._text += chunk.decode()

    def __aiter__(self) -> AsyncIterator[SseMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[SseMessage]:
        while True:
            try:
                yield await self.next(timeout=float("inf"))
            except EOFError:
                return


def _parse(block: str) -> SseMessage | None:
    """One event block; None for a comment-only block (a keep-alive)."""
    data: list[str] = []
    fields: dict[str, str] = {}
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    if not data and not fields:
        return None
    retry = fields.get("retry")
    return SseMessage(
        "\n".join(data), fields.get("event"), fields.get("id"), int(retry) if retry else None
    )


class TestClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` over the in-process app (base URL ``http://testserver``)."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, app: Any) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        self._app = app

    @asynccontextmanager
    async def sse(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> AsyncIterator[SseStream]:
        """``GET path`` as an open event stream; the response head must come within ``timeout``."""
        sent = [(b"host", b"testserver"), (b"accept", b"text/event-stream")]
        sent += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        query = urlencode(params or {}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": sent,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        gone = anyio.Event()
        asked = False
        head: list[dict[str, Any]] = []
        started = anyio.Event()
        send_body, body = anyio.create_memory_object_stream[bytes](_BUFFER)

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                head.append(message)
                started.set()
            else:  # http.response.body
                try:
                    if message.get("body"):
                        await send_body.send(message["body"])
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the test left the block: nobody reads any more
                if not message.get("more_body", False):
                    send_body.close()

        app_scope = anyio.CancelScope()

        async def run() -> None:
            with app_scope:
                async with send_body:
                    await self._app(scope, receive, send)
            started.set()

        failure: Exception | None = None  # raised outside the task group, unwrapped
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.move_on_after(timeout) as waiting:
                await started.wait()
            if waiting.cancelled_caught or not head:
                tg.cancel_scope.cancel()
                body.close()
                failure = (
                    TimeoutError(f"GET {path} sent no response head within {timeout} s")
                    if waiting.cancelled_caught
                    else RuntimeError(f"GET {path} ended without a response")
                )
            else:
                status = int(head[0]["status"])
                names = httpx.Headers([(k.decode(), v.decode()) for k, v in head[0]["headers"]])
                try:
                    async with body:
                        yield SseStream(status, names, body)
                except Exception as exc:  # noqa: BLE001 - the test's own error, re-raised below
                    failure = exc
                finally:
                    gone.set()  # the app sees the disconnect; it gets ``timeout`` s to finish
                    app_scope.deadline = anyio.current_time() + timeout
        if failure is not None:
            raise failure
