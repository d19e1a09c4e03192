"""``context``: what a handler knows about its request and how it shapes the response."""

from __future__ import annotations

import http.cookies
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Literal

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Message, Receive, Scope

from ._body import BodyLimit, body_chunks, read_body
from ._uploads import UploadFile

__all__ = ("Context", "ServerSentEvent")

_UNRESOLVED: Any = object()  # identity not looked up yet (most requests never ask)

SameSite = Literal["lax", "strict", "none"]
_BODY_LIMIT = BodyLimit(1024 * 1024)


class ServerSentEvent:
    """A server-sent event with a name, id or retry hint (see ``context.event``)."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        self.data, self.event, self.id, self.retry = data, event, id, retry


class Context:
    """The second argument of every handler.

    >>> async def execute(self, data, context):
    ...     token = context.headers.get("authorization")
    ...     context.set_status(201)
    ...     context.set_cookie("session", "abc", max_age=3600)   # Secure, HttpOnly, SameSite=Lax
    ...     return {"success": True, "client": context.client, "request": context.request_id}

    ``identity`` is the verified claims of the request's token (see ``identity``),
    ``auth`` the requirement the endpoint declared, ``params`` the path parameters.
    """

    __slots__ = {
        "_body": "The body once the tool read it (replayed to ``request``).",
        "_content_type": "The raw Content-Type header, or None.",
        "_headers": "Parsed request headers, built on first use.",
        "_identity": "The verified claims once looked up (see ``identity``).",
        "_length": "Content-Length (-1: none, -2: chunked).",
        "_limit": "The body limit of the route (HTTP_MAX_BODY, or HTTP_MAX_UPLOAD for uploads).",
        "_request": "The Starlette request, built on first use.",
        "_streamed": "Whether the body was streamed into a form (so it cannot be read again).",
        "_uploads": "The files of a multipart body, closed by the tool after the response.",
        "auth": "The requirement the endpoint declared with ``add_endpoint(..., auth=...)``.",
        "guard": "What verifies the request's token (``_security.Guard``), or None.",
        "params": "The path parameters, converted: ``{'product_id': 7}``.",
        "receive": "The ASGI ``receive`` callable of the request.",
        "request_id": "The request id (``X-Request-ID``, also on every log line of the request).",
        "response_headers": "Headers the handler added (``set_header``, ``set_cookie``).",
        "scope": "The ASGI scope of the request.",
        "status": "The status the handler set (``set_status``, ``redirect``), or None.",
    }

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        request_id: str,
        length: int = -1,
        content_type: bytes | None = None,
        limit: BodyLimit = _BODY_LIMIT,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.request_id = request_id
        self._identity: Any = _UNRESOLVED
        self.guard: Any = None
        self.auth: Any = None
        self.params: dict[str, Any] = {}
        self.status: int | None = None
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        self._body: bytes | None = None
        self._request: Request | None = None
        self._headers: Headers | None = None
        self._length = length
        self._content_type = content_type
        self._limit = limit
        self._streamed = False
        self._uploads: list[UploadFile] | None = None

    # -- the request ---------------------------------------------------------------

    @property
    def request(self) -> Request:
        """The Starlette ``Request`` (its body is still readable after the tool read it)."""
        if self._request is None:
            receive = self.receive if self._body is None else _replay(self._body, self.receive)
            self._request = Request(self.scope, receive)
            self._request.scope["path_params"] = self.params
            self._request._stream_consumed = self._streamed  # its body() says so, never hangs
        return self._request

    @property
    def headers(self) -> Headers:
        """Request headers, case-insensitive: ``context.headers.get("user-agent")``."""
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    @property
    def identity(self) -> Any:
        """The verified claims of the request's token (``{"sub": "7", "roles": ["admin"],
        ...}``), or None when it carries no valid one.

        Only a token the auth tool verified sets it (``Authorization: Bearer`` or the
        ``access_token`` cookie, which needs the CSRF header on POST/PUT/PATCH/DELETE):
        no body, query or header field, handler or middleware can set or change it.

        >>> user_id = int(context.identity["sub"])
        """
        if self._identity is _UNRESOLVED:
            guard = self.guard
            self._identity = guard.identify(self) if guard is not None else None
        return self._identity

    @identity.setter
    def identity(self, value: Any) -> None:
        raise AttributeError(
            "context.identity is set only from a token the auth tool verified; to authenticate "
            "another way, plug a verifier into the http tool (HttpTool.use_token_verifier)"
        )

    @property
    def client(self) -> str | None:
        """The client's address (host), as the server saw it."""
        client = self.scope.get("client")
        return client[0] if client else None

    @property
    def method(self) -> str:
        """The request method: ``"GET"``, ``"POST"``... (a websocket's handshake is a GET)."""
        return str(self.scope.get("method", "GET"))

    @property
    def path(self) -> str:
        """The request path, without the query string: ``"/products/7"``."""
        return str(self.scope["path"])

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies the client sent."""
        return self.request.cookies

    async def body(self) -> bytes:
        """The exact raw request body, as the client sent it (read once, then cached).

        For checking a webhook's signature; works beside a request model (the body
        the model was decoded from is the same bytes). A ``multipart/form-data``
        body streams into its files instead of being kept, so it has no raw bytes.

        >>> expected = hmac.new(SECRET, await context.body(), hashlib.sha256).hexdigest()
        """
        if self._body is None:
            if self._streamed:
                raise RuntimeError(
                    "the multipart/form-data body was streamed into its upload files and is "
                    "not kept: read the files (data.<field>) instead of context.body()"
                )
            length = self._length
            has_body = length > 0 or length == -2
            self._body = await read_body(self.receive, length, self._limit) if has_body else b""
        return self._body

    def _chunks(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk, once (the tool's multipart parser reads it this way)."""
        if self._body is not None:
            return _once(self._body)
        self._streamed = True
        if self._request is not None:
            self._request._stream_consumed = True
        return body_chunks(self.receive, self._length, self._limit)

    async def _close_uploads(self) -> None:
        """Close every upload of the request (shielded: it runs even when cancelled)."""
        uploads, self._uploads = self._uploads or [], None
        with anyio.CancelScope(shield=True):
            for upload in uploads:
                await upload.close()

    # -- the response ----------------------------------------------------------------

    def set_status(self, code: int) -> None:
        """Answer with ``code`` instead of the endpoint's ``status_code``."""
        if not 100 <= code <= 599:
            raise ValueError(f"HTTP status must be between 100 and 599, got {code}")
        self.status = code

    def set_header(self, name: str, value: str) -> None:
        """Add a response header (call again to add another value)."""
        if self.response_headers is None:
            self.response_headers = []
        self.response_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        max_age: int | None = None,
        expires: datetime | int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = True,
        httponly: bool = True,
        samesite: SameSite | None = "lax",
    ) -> None:
        """Set a cookie; Secure, HttpOnly and SameSite=Lax unless told otherwise."""
        cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        cookie[key] = value
        morsel = cookie[key]
        if max_age is not None:
            morsel["max-age"] = max_age
        if isinstance(expires, datetime):
            morsel["expires"] = format_datetime(expires, usegmt=True)
        elif expires is not None:
            morsel["expires"] = expires
        morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite is not None:
            if samesite.lower() not in ("lax", "strict", "none"):
                raise ValueError(f"samesite must be 'lax', 'strict' or 'none', got {samesite!r}")
            morsel["samesite"] = samesite.capitalize()
        self.set_header("set-cookie", cookie.output(header="").strip())

    def delete_cookie(
        self, key: str, *, path: str = "/", domain: str | None = None, secure: bool = True
    ) -> None:
        """Tell the client to drop a cookie (same ``path`` and ``domain`` as when it was set)."""
        self.set_cookie(key, "", max_age=0, expires=0, path=path, domain=domain, secure=secure)

    def redirect(self, url: str, status_code: int = 307) -> None:
        """Answer with a redirect to ``url`` (307 keeps the method; use 303 after a form POST).

        >>> context.redirect("/login", 303)
        >>> return None
        """
        if not 300 <= status_code <= 399:
            raise ValueError(f"a redirect status must be 3xx, got {status_code}")
        self.status = status_code
        self.set_header("location", url)

    def event(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> ServerSentEvent:
        """A server-sent event with a name, id or retry hint, for ``add_sse`` handlers to yield.

        >>> yield context.event({"price": 3}, event="price", id="42")
        """
        return ServerSentEvent(data, event=event, id=id, retry=retry)

    def __repr__(self) -> str:
        return f"<Context {self.scope.get('method', 'WS')} {self.scope['path']}>"


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out the already-read body once, then defers to the server."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
