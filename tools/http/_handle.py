"""``Http``: the ``http`` a plugin receives. Every registration belongs to the plugin."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

from microcore.tooling import (
    HookError,
    Owner,
    Registration,
    RegistrationError,
    require_coroutine_function,
)

from ._annotations import annotated_models
from ._endpoint import Endpoint
from ._registry import Entry, Registry
from ._routing import CompiledPath
from ._security import Guard, parse_rate
from ._static import StaticMount
from ._streaming import WebSocketRoute

__all__ = ("Http", "Middleware")

METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class Middleware:
    """An ``async def fn(context, call_next)`` around every request, owned by a plugin."""

    __slots__ = ("fn", "owner")

    def __init__(self, fn: Callable[..., Awaitable[Any]], owner: Owner) -> None:
        self.fn = fn
        self.owner = owner


class Http:
    """Register routes, streams, static files and middleware (plain calls, no await).

    Everything registered here belongs to the plugin: it serves once the plugin
    is active and disappears when the plugin is unloaded. Each call returns a
    registration; ``await registration.release()`` removes it early.

    >>> async def on_boot(self):
    ...     self.http.add_endpoint("/products", "POST", self.execute,
    ...                            request_model=NewProduct, status_code=201, tags=["products"])
    """

    def __init__(
        self,
        registry: Registry,
        owner: Owner,
        *,
        development: bool = False,
        guard: Guard | None = None,
    ) -> None:
        self._registry = registry
        self._owner = owner
        self._development = development  # validate responses against their models
        self._guard = guard or Guard()  # what enforces auth= and rate=

    def add_endpoint(
        self,
        path: str,
        method: str,
        handler: Callable[[Any, Any], Awaitable[Any]],
        *,
        request_model: Any = None,
        response_model: Any = None,
        status_code: int = 200,
        tags: list[str] | None = None,
        summary: str | None = None,
        auth: Any = None,
        rate: str | None = None,
    ) -> Registration:
        """Serve ``method path`` with ``async def handler(data, context)``.

        ``data`` is ``request_model`` (a msgspec Struct) decoded from path params,
        query params and the JSON or form body (``UploadFile`` fields take multipart
        files), or a dict of them when no model is given.
        Return a dict, list or Struct (JSON), None (204) or a Starlette Response;
        ``raise NotFound("...")`` (or another ``HttpError``) answers that status.
        ``path`` uses Starlette syntax: ``/products/{product_id:int}``.
        ``response_model`` is checked in development and documented in /openapi.json.

        ``auth=True`` needs a valid token (``Authorization: Bearer`` or the ``access_token``
        cookie; the auth tool verifies it), ``auth="admin"`` also that role in its
        ``roles`` claim: 401 without a valid token, 403 without the role (or, for the
        cookie, without the CSRF header); ``context.identity`` is the verified claims.
        ``rate="10/minute"`` (second, minute, hour, day) limits each identity, or each
        client address when anonymous: 429 with ``Retry-After`` past it.

        Without ``request_model=`` the ``data`` annotation (a Struct) is the request
        model; without ``response_model=`` the return annotation (a Struct or
        ``list[Struct]``) is the response model:

        >>> async def execute(self, data: NewProduct, context: Context) -> Product: ...
        >>> self.http.add_endpoint("/products", "POST", self.execute, status_code=201)
        """
        verb = self._method(method)
        where = f"{verb} {path}"
        self._require_async(handler, f"http endpoint {where}")
        if not 100 <= status_code <= 599:
            raise RegistrationError(f"{where}: status_code must be 100-599, got {status_code}")
        limit = parse_rate(rate, where)
        self._guard.require(auth=auth, rate=limit, where=where)
        endpoint = self._endpoint(
            verb,
            path,
            handler,
            request_model=request_model,
            response_model=response_model,
            status_code=status_code,
            tags=tags,
            summary=summary,
            auth=auth,
            rate=limit,
            kind="route",
        )
        return self._add_route(endpoint, "route")

    def add_sse(
        self,
        path: str,
        handler: Callable[[Any, Any], Any],
        *,
        request_model: Any = None,
        tags: list[str] | None = None,
        summary: str | None = None,
        auth: Any = None,
    ) -> Registration:
        """Serve ``GET path`` as server-sent events: one per value ``async def stream(data,
        context)`` yields (JSON unless a str).

        ``yield context.event(data, event="price", id="7")`` names one. Its ``data``
        annotation, a Struct, is the request model unless ``request_model=`` is given. The
        generator is cancelled when the client disconnects.
        """
        where = f"sse GET {path}"
        if not inspect.isasyncgenfunction(handler):
            raise HookError(
                f"{where} of {self._owner.identity!r} must be an async generator: "
                "declare it 'async def stream(self, data, context)' and 'yield' each event"
            )
        self._guard.require(auth=auth, rate=None, where=where)
        endpoint = self._endpoint(
            "GET",
            path,
            handler,
            request_model=request_model,
            tags=tags,
            summary=summary,
            auth=auth,
            kind="sse",
        )
        return self._add_route(endpoint, "sse")

    def add_websocket(
        self, path: str, handler: Callable[[Any], Awaitable[None]], *, auth: Any = None
    ) -> Registration:
        """Serve a websocket at ``path`` with ``async def handler(websocket)`` (Starlette's).

        ``await websocket.accept()``, ``receive_json()``, ``send_json()``...; path
        parameters are in ``websocket.path_params``.

        Middleware runs around it as around a request (``context.scope["type"]`` is
        ``"websocket"``); ``auth=`` works as for ``add_endpoint`` (a cookie-authenticated
        websocket must come from a page of this host), and the verified claims are
        ``websocket.scope["identity"]``. A refusal closes it (1008) before it is accepted.
        """
        where = f"websocket {path}"
        self._require_async(handler, where)
        self._guard.require(auth=auth, rate=None, where=where)
        compiled = CompiledPath(path)
        route = WebSocketRoute(path, handler, self._owner, auth=auth)
        entry = Entry(
            "websocket",
            f"WS {path}",
            self._owner,
            route,
            compiled=compiled,
            slot=("WS", compiled.key),
        )
        return self._registry.add(entry)

    def mount_static(self, path: str, directory: str | os.PathLike[str]) -> Registration:
        """Serve the files of ``directory`` under ``path`` (GET/HEAD; no dotfiles, no ``..``)."""
        mount = StaticMount(path, directory, self._owner)
        label = f"{mount.prefix or '/'} -> {mount.directory}"
        entry = Entry("static", label, self._owner, mount, slot=("STATIC", mount.prefix))
        return self._registry.add(entry)

    def add_middleware(self, fn: Callable[..., Awaitable[Any]]) -> Registration:
        """Run ``async def fn(context, call_next)`` around every request, in registration order.

        ``response = await call_next()`` runs the rest (a Starlette ``Response``);
        return it (changed or not), or return something else instead, as a handler would.

        >>> async def timing(context, call_next):
        ...     response = await call_next()
        ...     response.headers["x-elapsed"] = "..."
        ...     return response
        """
        self._require_async(fn, "http middleware")
        name = getattr(fn, "__qualname__", repr(fn))
        entry = Entry("middleware", name, self._owner, Middleware(fn, self._owner))
        return self._registry.add(entry)

    # -- helpers ---------------------------------------------------------------------

    def _endpoint(self, method: str, path: str, handler: Any, **options: Any) -> Endpoint:
        summary = options.pop("summary") or _first_line(getattr(handler, "__doc__", None))
        wants_response = options["kind"] == "route"  # a stream has no response model
        missing_response = wants_response and options["response_model"] is None
        if options["request_model"] is None or missing_response:
            declared = annotated_models(
                handler,
                f"{method} {path} of {self._owner.identity!r}",
                request=options["request_model"] is None,
                response=missing_response,
            )
            if options["request_model"] is None:
                options["request_model"] = declared.request
            if missing_response:
                options["response_model"] = declared.response
        try:
            return Endpoint(
                method=method,
                path=path,
                handler=handler,
                owner=self._owner,
                summary=summary,
                validate_response=self._development,
                **options,
            )
        except (TypeError, ValueError) as exc:  # msgspec refuses a model it cannot decode
            raise RegistrationError(
                f"{method} {path} of {self._owner.identity!r}: a model is not usable: {exc}; "
                "use msgspec Structs or types msgspec supports"
            ) from exc

    def _add_route(self, endpoint: Endpoint, kind: str) -> Registration:
        compiled = CompiledPath(endpoint.path)
        entry = Entry(
            kind,
            f"{endpoint.method} {endpoint.path}",
            self._owner,
            endpoint,
            compiled=compiled,
            slot=(endpoint.method, compiled.key),
        )
        return self._registry.add(entry)

    def _method(self, method: str) -> str:
        verb = method.upper()
        if verb not in METHODS:
            raise RegistrationError(
                f"HTTP method {method!r} is not supported; use one of {', '.join(METHODS)}"
            )
        return verb

    def _require_async(self, fn: Any, what: str) -> None:
        require_coroutine_function(fn, what=f"{what} of {self._owner.identity!r}")

    def __repr__(self) -> str:
        return f"<http for {self._owner.identity}>"


def _first_line(doc: str | None) -> str | None:
    if not doc:
        return None
    line = doc.strip().splitlines()[0].strip()
    return line or None
