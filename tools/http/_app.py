"""The ASGI app: a lean dispatcher over the current :class:`Snapshot`.

Per request: one pass over the raw headers, one route lookup, the body read
with the size limit enforced as it streams in, the handler, one encode, two
``send`` calls. No Starlette middleware stack and no ``Request`` object unless
a handler asks for ``context.request``. Every failure becomes the one error
shape; anything unexpected is a 500 whose error id is also in the log line
that carries the traceback.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from time import perf_counter
from typing import Any

import anyio
import structlog
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from microcore.tooling import MicroCoreError, causation, new_id

from ._context import Context
from ._cors import Cors
from ._endpoint import Endpoint, render_result
from ._errors import HttpError, NotFound, Unauthorized, error_json
from ._observe import Observers
from ._registry import Snapshot
from ._responses import JSONReply, error_reply, internal_error_reply
from ._routing import RouteTable
from ._stats import FLUSH_AT
from ._streaming import EventStream, WebSocketRoute
from ._streams import CLOSE_SECONDS, OpenStreams

__all__ = ("HttpApp",)


_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_X_REQUEST_ID = b"x-request-id"
_bind = structlog.contextvars.bind_contextvars
_reset = structlog.contextvars.reset_contextvars


class _Disconnected(Exception):
    """The client went away while we read its body: nobody is left to answer."""


class HttpApp:
    """Serves ``snapshot``; the tool replaces the snapshot whole when plugins change."""

    def __init__(self, *, log: Any, max_body: int, cors: Cors | None = None) -> None:
        self.snapshot = Snapshot(RouteTable(), ())
        self.max_body = max_body
        self.cors = cors
        self.sse_ping = 15.0
        self.observers = Observers(log)
        self.streams = OpenStreams()  # event streams and websockets open now, by owner
        self._log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    # -- http ------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        snapshot = self.snapshot
        request_id = None
        length = -1
        origin = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -2
            elif name == _X_REQUEST_ID:
                request_id = value.decode("latin-1")
            elif name == b"transfer-encoding":
                length = -2  # chunked: read until the end, counting
            elif name == b"origin":
                origin = value
        if request_id is None or not _REQUEST_ID_OK.match(request_id):
            request_id = new_id()
        tokens = _bind(request_id=request_id)
        observing = self.observers.observing
        started = perf_counter() if observing else 0.0
        endpoint: Endpoint | None = None
        try:
            with causation(request_id):
                context = Context(scope, receive, request_id)
                cors = self.cors
                if cors is not None and origin is not None and cors.is_preflight(scope):
                    response: Response = cors.preflight(origin, scope)
                else:
                    endpoint, allow = _route(snapshot.table, context)
                    if snapshot.middleware:
                        response = await self._wrapped(snapshot, context, endpoint, allow, length)
                    else:
                        response = await self._serve(
                            snapshot.table, context, endpoint, allow, length
                        )
                response.raw_headers.append((_X_REQUEST_ID, request_id.encode("latin-1")))
                if cors is not None and origin is not None:
                    cors.decorate(response, origin)
                if scope["method"] == "HEAD":
                    send = _without_body(send)
                if isinstance(response, EventStream):
                    response.track(self.streams, endpoint.owner if endpoint else None)
                await response(scope, receive, send)
                if observing:
                    duration = perf_counter() - started
                    stats = self.observers.stats
                    if endpoint is not None and stats is not None:
                        # the common case, kept lean: one tuple, folded in later (_stats.py)
                        status, method = response.status_code, scope["method"]
                        pending = stats.pending
                        pending.append((method, endpoint.path, status, duration))
                        if len(pending) >= FLUSH_AT:
                            stats.flush()
                        if self.observers.notifying:
                            self.observers.notify(
                                method, scope["path"], endpoint.path, status, duration,
                                request_id, endpoint.owner.identity,
                            )  # fmt: skip
                    else:
                        self._observed(snapshot, context, endpoint, response.status_code, duration)
        except _Disconnected:
            return
        finally:
            _reset(**tokens)

    def _observed(
        self,
        snapshot: Snapshot,
        context: Context,
        endpoint: Endpoint | None,
        status: int,
        duration: float,
    ) -> None:
        """Count the answered request; hand it to the access log and the observers."""
        scope = context.scope
        owner = None
        if endpoint is not None:
            route: str | None = endpoint.path
        else:
            route = None
            mounted = snapshot.table.match_mount(scope["path"])
            if mounted is not None:
                mount = mounted[0]
                route, owner = f"{mount.prefix}/{{path}}", mount.owner.identity
        observers = self.observers
        if observers.stats is not None:
            observers.stats.add(scope["method"], route, status, duration)
        if observers.notifying:
            if endpoint is not None:
                owner = endpoint.owner.identity
            observers.notify(
                scope["method"], scope["path"], route, status, duration, context.request_id, owner
            )

    async def _wrapped(
        self,
        snapshot: Snapshot,
        context: Context,
        endpoint: Endpoint | None,
        allow: str,
        length: int,
    ) -> Response:
        """The request through the middleware chain (only when some plugin added one)."""

        async def innermost() -> Response:
            return await self._serve(snapshot.table, context, endpoint, allow, length)

        try:
            return await _chain(snapshot.middleware, context, innermost)
        except _Disconnected:
            raise
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one request
            return self._error(exc, context, endpoint)

    async def _serve(
        self,
        table: RouteTable,
        context: Context,
        endpoint: Endpoint | None,
        allow: str,
        length: int,
    ) -> Response:
        scope = context.scope
        try:
            if endpoint is None:
                return await self._unrouted(table, context, allow)
            if endpoint.auth and context.identity is None:
                raise Unauthorized(
                    f"{endpoint.method} {endpoint.path} requires authentication; "
                    "send credentials the auth middleware accepts",
                )
            body = None
            if length > 0 or length == -2:
                body = await self._read_body(context.receive, length)
                context._body = body
            data = endpoint.build_data(context.params, scope["query_string"], body)
            if endpoint.kind == "sse":
                if scope["method"] == "HEAD":  # the headers only: a stream would never end
                    return EventStream.head(context)
                events: Any = endpoint.handler(data, context)
                return EventStream(events, context, self._log, self.sse_ping)
            owner = endpoint.owner
            owner.enter()  # a reload shuts the old version down only after this call
            try:
                result = await endpoint.handler(data, context)
            finally:
                owner.leave()
            return endpoint.render(result, context)
        except _Disconnected:
            raise
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one request
            return self._error(exc, context, endpoint)

    def _error(self, exc: Exception, context: Context, endpoint: Endpoint | None) -> Response:
        """The error reply for ``exc`` (from a handler or a middleware): its own status when
        it has one, else a logged 500. What the failed handler set on the response (status,
        headers, cookies) is dropped: a failed request never sets a cookie."""
        context.status = None
        context.response_headers = None
        if not isinstance(exc, MicroCoreError) or exc.http_status is None:
            return self._failure(exc, context, endpoint)
        if isinstance(exc, HttpError):
            error_id = None
            if exc.http_status >= 500:
                error_id = new_id()
                self._log_failure(exc, context, endpoint, error_id)
            return error_reply(exc, error_id)
        return JSONReply(error_json(exc.code, exc.public_message), exc.http_status)

    async def _unrouted(self, table: RouteTable, context: Context, allow: str) -> Response:
        scope = context.scope
        method, path = scope["method"], scope["path"]
        if allow:
            raise HttpError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path}; allowed methods: {allow}",
                headers={"allow": allow},
            )
        mounted = table.match_mount(path)
        if mounted is not None:
            mount, rest = mounted
            response: Response = await mount.respond(scope, rest)
            return response
        other = path[:-1] if path.endswith("/") else path + "/"
        if method in ("GET", "HEAD") and other != "" and table.match(other) is not None:
            query = scope["query_string"]
            location = other + ("?" + query.decode("latin-1") if query else "")
            return JSONReply(b"", 307, [(b"location", location.encode("latin-1"))])
        raise NotFound(f"no route matches {method} {path}")

    async def _read_body(self, receive: Receive, length: int) -> bytes:
        """The whole body, refusing it (413) as soon as it is known to be over the limit."""
        limit = self.max_body
        if length > limit:
            raise _too_large(limit)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise _too_large(limit)
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _failure(self, exc: BaseException, context: Context, endpoint: Endpoint | None) -> Response:
        error_id = new_id()
        self._log_failure(exc, context, endpoint, error_id)
        return internal_error_reply(error_id)

    def _log_failure(
        self,
        exc: BaseException,
        context: Context,
        endpoint: Endpoint | None,
        error_id: str | None,
    ) -> None:
        self._log.error(
            "request_failed",
            error_id=error_id,
            method=context.scope.get("method"),
            path=context.scope["path"],
            owner=endpoint.owner.identity if endpoint is not None else None,
            exc_info=exc,
        )

    # -- websocket -------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.snapshot.table.match_websocket(scope["path"])
        if found is None:
            await send({"type": "websocket.close", "code": 1000})
            return
        route, params = found
        scope["path_params"] = params
        request_id = new_id()
        tokens = _bind(request_id=request_id)
        websocket = WebSocket(scope, receive, send)
        try:
            with causation(request_id), self.streams.hold(route.owner) as stream:
                await self._converse(route, websocket)
            if stream.closed is not None:  # by a reload or the shutdown: tell the client why
                with anyio.move_on_after(CLOSE_SECONDS):
                    await _close(websocket, stream.closed.websocket_code, stream.closed.reason)
        finally:
            _reset(**tokens)

    async def _converse(self, route: WebSocketRoute, websocket: WebSocket) -> None:
        """The plugin's handler, its failure logged and answered with close code 1011."""
        try:
            await route.handler(websocket)
        except WebSocketDisconnect:
            pass
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one connection
            error_id = new_id()
            self._log.error(
                "websocket_failed",
                error_id=error_id,
                path=websocket.scope["path"],
                owner=route.owner.identity,
                exc_info=exc,
            )
            await _close(websocket, 1011, f"internal error {error_id}")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close ``websocket`` unless it is closed already (or the client left meanwhile)."""
    if websocket.application_state is WebSocketState.DISCONNECTED:
        return
    with suppress(WebSocketDisconnect, OSError):  # the client left first: nothing to tell
        await websocket.close(code=code, reason=reason)


def _route(table: RouteTable, context: Context) -> tuple[Endpoint | None, str]:
    """The endpoint for the request (None if unrouted) and the methods its path allows."""
    scope = context.scope
    found = table.match(scope["path"])
    if found is None:
        return None, ""
    routes, context.params = found
    method = scope["method"]
    endpoint = routes.methods.get(method)
    if endpoint is None and method == "HEAD":
        endpoint = routes.methods.get("GET")
    if endpoint is not None:
        context.auth = endpoint.auth
    return endpoint, routes.allow


async def _chain(
    middleware: tuple[Any, ...], context: Context, innermost: Callable[[], Awaitable[Any]]
) -> Response:
    """Run ``middleware`` outermost first; each gets ``call_next`` for the rest of the chain."""

    async def step(index: int) -> Response:
        if index == len(middleware):
            response: Response = await innermost()
            return response

        async def call_next(_context: Context | None = None) -> Response:
            return await step(index + 1)

        result = await middleware[index].fn(context, call_next)
        return render_result(result, context)

    return await step(0)


def _too_large(limit: int) -> HttpError:
    return HttpError(
        413,
        "payload_too_large",
        f"the request body is over the limit of {limit} bytes (HTTP_MAX_BODY)",
    )


def _without_body(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_head
