"""The ``http`` tool: routes registered by plugins, served by a lean ASGI app.

Plugins register with plain calls (``add_endpoint``, ``add_sse``,
``add_websocket``, ``mount_static``, ``add_middleware``); each registration
belongs to the plugin and serves only while it is active. The route table is
rebuilt and swapped whole whenever plugins change, so a request in flight
finishes on the handler it started with; an open event stream or websocket of
a version that stops serving is closed at once (the client reconnects to the
new version), and every open stream closes on SIGTERM/SIGINT, so none holds a
reload or the shutdown.

Settings: ``HTTP_MAX_BODY`` (bytes, default 1 MiB), ``HTTP_MAX_UPLOAD`` (the whole
body of a route with ``UploadFile`` fields, bytes, default 20 MiB), ``HTTP_DOCS`` (serve
``/openapi.json`` and ``/docs``, default true), ``HTTP_TITLE``, ``HTTP_VERSION``,
``HTTP_SSE_PING``, ``HTTP_ACCESS_LOG`` (one ``http_request`` log line per request:
method, path, status, duration_ms, request_id, plugin; default true), the
``HTTP_CORS_*`` settings (see ``_cors.py``), ``HTTP_TRUSTED_PROXIES`` (see
``_proxies.py``) and ``HTTP_WS_ORIGINS`` (origins that may open a websocket; others
are closed with 1008 before accept).

Module map: ``_handle`` (what plugins call), ``_registry`` (who owns what,
collisions), ``_routing`` (the route table), ``_app`` (the ASGI dispatcher),
``_endpoint`` (data in, response out), ``_body`` (reading it, bounded), ``_forms``
(url-encoded and multipart bodies), ``_uploads`` (``UploadFile``), ``_context``, ``_errors``,
``_responses``, ``_streaming`` (SSE, websockets), ``_streams`` (closing open
streams on reload and shutdown), ``_static``, ``_cors``, ``_proxies`` (trusted proxies),
``_observe`` (access log, observers), ``_stats`` (request counters), ``_openapi``
and ``_docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from starlette.responses import Response

from microcore import Tool
from microcore.tooling import ConfigurationError, KernelView, Owner, RouteKind, ServedRoute
from tools.config import Config

from ._app import HttpApp
from ._body import BodyLimit
from ._cors import Cors
from ._docs import ApiDocs
from ._endpoint import Endpoint
from ._handle import Http
from ._observe import Exchange, Observer
from ._proxies import TrustedProxies
from ._registry import Entry, Registry
from ._security import TokenVerifier
from ._static import StaticMount
from ._stats import RequestStats
from ._streaming import EventStream, WebSocketRoute
from ._streams import CLOSE_SECONDS, chain_exit_signals

if TYPE_CHECKING:  # optional: rate limits count in the state tool when it is there
    from tools.state import State

__all__ = ("Exchange", "Http", "HttpTool", "RequestStats", "TokenVerifier")

MIB = 1024 * 1024
_log = structlog.get_logger("microcore.http", tool="http")


class HttpTool(Tool):
    """Serve HTTP: endpoints, server-sent events, websockets, static files, middleware.

    >>> self.http.add_endpoint("/products/{product_id:int}", "GET", self.execute)

    Other tools serve their own routes under their own owner::

        owner = Owner("tools.system"); owner.activate()
        http.bind(owner).add_endpoint("/system/health", "GET", self.health)
    """

    name = "http"
    reserved_routes = ("GET /openapi.json", "GET /docs")  # the docs it serves (HTTP_DOCS)

    def __init__(self, config: Config, kernel: KernelView, state: State | None = None) -> None:
        self._config = config
        self._kernel = kernel
        self._log = _log
        self.development = False
        self.registry = Registry(self._refresh)
        self.app = HttpApp(log=self._log, max_body=MIB)
        self.app.guard.state = state  # where rate= limits count (shared by replicas on Redis)
        self.owner = Owner("tools.http")
        self.docs: ApiDocs | None = None
        self._restore_signals: Callable[[], None] = lambda: None

    async def setup(self) -> None:
        config = self._config
        self.development = bool(config.development)
        self.app.body_limit = BodyLimit(_positive(config, "HTTP_MAX_BODY", MIB))
        self.app.upload_limit = BodyLimit(
            _positive(config, "HTTP_MAX_UPLOAD", 20 * MIB), "HTTP_MAX_UPLOAD"
        )
        self.app.proxies = TrustedProxies.parse(config.get("HTTP_TRUSTED_PROXIES"))
        self.app.ws_origins = _origins(config.get("HTTP_WS_ORIGINS"))
        self.app.guard.ws_origins = self.app.ws_origins  # cookie websockets from those pages too
        self.app.sse_ping = config.get_float("HTTP_SSE_PING", 15.0)
        self.app.cors = _cors_from(config)
        self.app.observers.set_access_log(config.get_bool("HTTP_ACCESS_LOG", True))
        self.owner.activate()
        if config.get_bool("HTTP_DOCS", True):
            self.docs = ApiDocs(
                self.registry,
                lambda: self.app.snapshot,
                title=config.get("HTTP_TITLE") or "microcore API",
                version=config.get("HTTP_VERSION") or "0.1.0",
                exclude_owner=self.owner,
            )
            self.docs.register(self.bind(self.owner))
        streams = self.app.streams
        self._restore_signals = chain_exit_signals(streams.close_all, streams.settled)
        self._kernel.add_reload_listener(self._goodbyes_said)

    async def _goodbyes_said(self) -> None:
        """After a hot reload, wait (at most ``CLOSE_SECONDS``) for the streams the swap closed
        to say goodbye. Set up before the reloader exists, this listener runs before its
        AI_CONTEXT.md rewrite, which holds the event loop for a while (40 ms, and up to 0.7 s
        on a loaded machine under coverage): started first, that rewrite held the goodbyes
        until it finished and the streams ended past the 1 s SPEC §5 promises."""
        with anyio.move_on_after(CLOSE_SECONDS):
            await self.app.streams.settled()

    async def drain(self) -> None:
        """Close every open event stream and websocket (1001); new ones close at once."""
        self.app.streams.close_all()

    async def shutdown(self) -> None:
        """Close what is still open; give SIGTERM and SIGINT back to their previous handlers."""
        self.app.streams.close_all()
        self._restore_signals()

    def bind(self, owner: Owner) -> Http:
        """The per-plugin (or per-tool) handle whose registrations ``owner`` owns."""
        return Http(self.registry, owner, development=self.development, guard=self.app.guard)

    def use_token_verifier(self, verify: TokenVerifier) -> Callable[[], None]:
        """Plug in what checks tokens for ``auth=`` routes and ``context.identity`` (the auth
        tool does at set-up): ``verify(token)`` returns the claims, or None when the token
        is not valid; it runs on the event loop, so keep it CPU-cheap. Returns ``remove``.
        One verifier at a time: a second is a configuration error.

        >>> remove = http.use_token_verifier(lambda token: claims_or_none(token))
        """
        guard = self.app.guard
        if guard.verifier is not None:
            raise ConfigurationError(
                "a token verifier is already installed in the http tool; only one tool may "
                "verify tokens (remove the other auth tool)"
            )
        guard.verifier = verify

        def remove() -> None:
            if guard.verifier is verify:
                guard.verifier = None

        return remove

    def on_plugins_changed(self) -> None:
        self._refresh()

    def asgi(self) -> HttpApp:
        return self.app

    def routes(self) -> list[ServedRoute]:
        """Every registration that serves now: kind, method, path, owner, tags, summary,
        and for endpoints the status code and the request and response models."""
        return [_served(entry) for entry in self.registry.entries() if entry.owner.active]

    def observe(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(exchange)`` synchronously after every answered request; returns
        ``remove``. ``exchange`` has ``method``, ``path``, ``route`` (the matched template,
        None when nothing matched), ``status``, ``duration`` (seconds), ``request_id`` and
        ``owner``. Keep it cheap: it runs on every request; what it raises is logged.

        >>> remove = http.observe(lambda ex: counts.update([(ex.route, ex.status)]))
        """
        return self.app.observers.add(callback)

    def request_stats(self) -> RequestStats:
        """Start counting answered requests and return the live counters: ``routes()`` maps
        (method, route template) to ``count``, ``total`` seconds, ``statuses`` (status ->
        count) and ``buckets`` (a latency histogram over ``bounds``, not cumulative).
        Cheap enough to leave on: no callback per request.

        >>> stats = http.request_stats(); stats.routes()[("GET", "/products")].count
        """
        return self.app.observers.counters()

    def event_stream(self, events: AsyncIterator[Any], context: Any) -> Response:
        """A response streaming what ``events`` (an async generator) yields as server-sent
        events, exactly as an ``add_sse`` route does: for an endpoint that decides per
        request whether to stream (after an access check, say).

        >>> return http.event_stream(self.updates(context), context)
        """
        return EventStream(events, context, self._log, self.app.sse_ping)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every endpoint that serves now."""
        docs = self.docs or ApiDocs(self.registry, lambda: self.app.snapshot, title="API")
        return docs.document()

    def _refresh(self) -> None:
        self.app.snapshot = self.registry.snapshot()
        self.app.streams.close_inactive()  # a swapped-out version's streams end with it


def _served(entry: Entry) -> ServedRoute:
    """The public row of one registration."""
    kind, owner, target = RouteKind(entry.kind), entry.owner.identity, entry.target
    if isinstance(target, Endpoint):
        return ServedRoute(
            kind=kind,
            label=entry.label,
            owner=owner,
            method=target.method,
            path=target.path,
            tags=tuple(target.tags),
            summary=target.summary,
            status_code=target.status_code,
            request_model=target.request_model,
            response_model=target.response_model,
        )
    if isinstance(target, WebSocketRoute):
        return ServedRoute(kind=kind, label=entry.label, owner=owner, path=target.path)
    if isinstance(target, StaticMount):
        return ServedRoute(kind=kind, label=entry.label, owner=owner, path=target.prefix)
    return ServedRoute(kind=kind, label=entry.label, owner=owner)  # middleware


def _positive(config: Config, key: str, default: int) -> int:
    value = config.get_int(key, default)
    if value <= 0:
        raise ConfigurationError(f"{key} must be a positive number of bytes, got {value}")
    return value


def _origins(raw: str | None) -> frozenset[str] | None:
    """HTTP_WS_ORIGINS as normalised origins (None: any origin may open a websocket)."""
    origins = {o.strip().rstrip("/").lower() for o in (raw or "").split(",") if o.strip()}
    for origin in origins:
        if "://" not in origin:
            raise ConfigurationError(
                f"HTTP_WS_ORIGINS: {origin!r} is not an origin; list scheme and host as a "
                "browser sends them, e.g. HTTP_WS_ORIGINS=https://app.example.com"
            )
    return frozenset(origins) or None


def _cors_from(config: Config) -> Cors | None:
    raw = (config.get("HTTP_CORS_ORIGINS") or "").strip()
    if not raw:
        return None
    origins = [o.strip() for o in raw.split(",") if o.strip()]
    credentials = config.get_bool("HTTP_CORS_CREDENTIALS", False)
    if credentials and "*" in origins:
        raise ConfigurationError(
            "HTTP_CORS_ORIGINS=* with HTTP_CORS_CREDENTIALS=true would let every web site send "
            "requests with your users' cookies and read the answers; list the origins that "
            "may do so instead, e.g. HTTP_CORS_ORIGINS=https://app.example.com"
        )
    methods = [m.strip().upper() for m in (config.get("HTTP_CORS_METHODS") or "").split(",")]
    headers = [h.strip() for h in (config.get("HTTP_CORS_HEADERS") or "").split(",")]
    return Cors(
        origins,
        methods=[m for m in methods if m] or None,
        headers=[h for h in headers if h] or None,
        credentials=credentials,
        max_age=config.get_int("HTTP_CORS_MAX_AGE", 600),
    )
