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
from contextvars import ContextVar
from time import perf_counter
from typing import Any

import anyio
import structlog
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from microcore.tooling import TRACING, MicroCoreError, causation, new_id

from ._body import BodyLimit
from ._body import Disconnected as _Disconnected
from ._context import Context
from ._cors import Cors
from ._endpoint import Endpoint, render_result
from ._errors import HttpError, NotFound, error_json
from ._observe import Observers
from ._proxies import TrustedProxies
from ._registry import Snapshot
from ._responses import JSONReply, error_reply, internal_error_reply
from ._routing import RouteTable
from ._security import Guard
from ._stats import FLUSH_AT
from ._streaming import EventStream, WebSocketRoute
from ._streams import CLOSE_SECONDS, OpenStreams
from ._tracing import traced_http

__all__ = ("HttpApp",)


_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_X_REQUEST_ID = b"x-request-id"
_DEFAULT_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))
_DEFAULT_NAMES = frozenset(name for name, _ in _DEFAULT_HEADERS)


def _request_id_var() -> ContextVar[Any]:
    """The ContextVar behind ``structlog.contextvars.bind_contextvars(request_id=...)``: set
    directly per request, it binds the same key for a tenth of bind/reset_contextvars' cost."""
    tokens = structlog.contextvars.bind_contextvars(request_id=...)
    structlog.contextvars.reset_contextvars(**tokens)
    return tokens["request_id"].var


_REQUEST_ID = _request_id_var()


class HttpApp:
    """Serves ``snapshot``; the tool replaces the snapshot whole when plugins change."""

    def __init__(self, *, log: Any, max_body: int, cors: Cors | None = None) -> None:
        self.snapshot = Snapshot(RouteTable(), ())
        self.body_limit = BodyLimit(max_body)  # HTTP_MAX_BODY
        self.upload_limit = BodyLimit(20 * max_body, "HTTP_MAX_UPLOAD")
        self.proxies: TrustedProxies | None = None  # HTTP_TRUSTED_PROXIES
        self.ws_origins: frozenset[str] | None = None  # HTTP_WS_ORIGINS
        self.cors = cors
        self.sse_ping = 15.0
        self.observers = Observers(log)
        self.streams = OpenStreams()  # event streams and websockets open now, by owner
        self.guard = Guard()  # auth=, CSRF and rate= (the auth tool plugs its verifier in)
        self._log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.proxies is not None:  # the client's address, before anything reads it
            self.proxies.apply(scope)
        kind = scope["type"]
        if kind == "http":
            if TRACING.enabled:
                await traced_http(self.snapshot.table, self._http, scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    # -- http ------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        snapshot = self.snapshot
        request_id = None
        length = -1
        origin = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -2
            elif name == _X_REQUEST_ID:
                request_id = value.decode("latin-1")
            elif name == b"transfer-encoding":
                length = -2  # chunked: read until the end, counting
            elif name == b"origin":
                origin = value
            elif name == b"content-type":
                content_type = value
        if request_id is None or not _REQUEST_ID_OK.match(request_id):
            request_id = new_id()
        bound = _REQUEST_ID.set(request_id)  # the log lines' request_id
        observing = self.observers.observing
        started = perf_counter() if observing else 0.0
        endpoint: Endpoint | None = None
        context: Context | None = None
        try:
            with causation(request_id):
                context = Context(
                    scope,
                    receive,
                    request_id,
                    length=length,
                    content_type=content_type,
                    limit=self.body_limit,
                )
                context.guard = self.guard
                cors = self.cors
                if cors is not None and origin is not None and cors.is_preflight(scope):
                    response: Response = cors.preflight(origin, scope)
                else:
                    endpoint, allow = _route(snapshot.table, context)
                    if endpoint is not None and endpoint.uploads:
                        context._limit = self.upload_limit
                    if snapshot.middleware:
                        response = await self._wrapped(snapshot, context, endpoint, allow)
                    else:
                        response = await self._serve(snapshot.table, context, endpoint, allow)
                response.raw_headers.append((_X_REQUEST_ID, request_id.encode("latin-1")))
                _default_headers(response.raw_headers)
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
                        observers = self.observers
                        if observers.notifying:
                            observers.notify(
                                method, scope["path"], endpoint.path, status, duration,
                                request_id, endpoint.owner.identity,
                            )  # fmt: skip
                    else:
                        self._observed(snapshot, context, endpoint, response.status_code, duration)
        except _Disconnected:
            return
        finally:
            if context is not None and context._uploads:
                await context._close_uploads()
            _REQUEST_ID.reset(bound)

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
    ) -> Response:
        """The request through the middleware chain (only when some plugin added one)."""

        async def innermost() -> Response:
            return await self._serve(snapshot.table, context, endpoint, allow)

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
    ) -> Response:
        scope = context.scope
        try:
            if endpoint is None:
                return await self._unrouted(table, context, allow)
            if endpoint.auth:
                self.guard.admit(endpoint.auth, context, f"{endpoint.method} {endpoint.path}")
            if endpoint.rate is not None:
                await self.guard.limit(endpoint.rate, context, f"{endpoint.method} {endpoint.path}")
            length = context._length
            if length > 0 or length == -2 or context._body is not None:
                data = await endpoint.read_data(context)  # JSON, a form or an upload
            else:
                data = endpoint.build_data(context.params, scope["query_string"], None)
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
        if self.ws_origins is not None and not self._origin_allowed(scope, self.ws_origins):
            await send({"type": "websocket.close", "code": 1008})  # before accept: a 403
            return
        snapshot = self.snapshot
        found = snapshot.table.match_websocket(scope["path"])
        if found is None:
            await send({"type": "websocket.close", "code": 1000})
            return
        route, params = found
        scope["path_params"] = params
        request_id = new_id()
        bound = _REQUEST_ID.set(request_id)  # the log lines' request_id
        websocket = WebSocket(scope, receive, send)
        context = Context(scope, receive, request_id)
        context.guard, context.params = self.guard, params
        conversed = Response(status_code=101)  # what call_next gives websocket middleware

        async def conversation() -> Response:
            if route.auth:
                self.guard.admit(route.auth, context, f"websocket {route.path}")
            scope["identity"] = context.identity  # the verified claims, for the handler
            with self.streams.track(route.owner) as stream:
                with stream.scope:
                    await self._converse(route, websocket)
                if stream.closed is not None:  # by a reload or the shutdown: tell the client why
                    with anyio.move_on_after(CLOSE_SECONDS):
                        await _close(websocket, stream.closed.websocket_code, stream.closed.reason)
            return conversed

        try:
            with causation(request_id):
                if snapshot.middleware:  # as around a request: auth middleware applies here too
                    response = await _chain(snapshot.middleware, context, conversation)
                else:
                    response = await conversation()
            if response is not conversed:  # a middleware answered instead: refused
                await _close(websocket, 1008, f"refused ({response.status_code})")
        except HttpError as exc:  # refused before the handler ran: closed before accept
            await _close(websocket, 1008, exc.message[:120])
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one connection
            error_id = new_id()
            self._log.error("websocket_failed", error_id=error_id, path=scope["path"], exc_info=exc)
            await _close(websocket, 1011, f"internal error {error_id}")
        finally:
            _REQUEST_ID.reset(bound)

    def _origin_allowed(self, scope: Scope, origins: frozenset[str]) -> bool:
        """Whether a websocket's ``Origin`` is in ``origins`` (no Origin: not a browser)."""
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1").strip().rstrip("/").lower()
                if origin not in origins:
                    self._log.warning("websocket_origin_refused", origin=origin, path=scope["path"])
                    return False
        return True

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


def _default_headers(raw: list[tuple[bytes, bytes]]) -> None:
    """Add ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY`` unless the
    response has its own."""
    for name, _ in raw:
        if name in _DEFAULT_NAMES:
            break
    else:
        raw.extend(_DEFAULT_HEADERS)
        return
    present = {name for name, _ in raw}
    raw.extend(pair for pair in _DEFAULT_HEADERS if pair[0] not in present)


def _without_body(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_head
