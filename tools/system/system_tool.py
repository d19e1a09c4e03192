"""The ``system`` tool: health, status, routes, events, graph, metrics and a live dashboard.

Routes (served through ``http`` under the tool's own owner):

* ``/system/health``: readiness: 200, or 503 naming every failed tool and plugin and every
  backing service that does not answer now (``Tool.probe``, cached ``SYSTEM_PROBE_CACHE`` s);
* ``/system/live``: liveness: 200 while the process answers;
* ``/system/status``: tools and plugins with status, error (file, line), registrations,
  boot and reload times; ``jobs``: each scheduled job of a serving plugin (owner, name,
  schedule, runs, failures, skips, last run, last duration, last error, next run);
* ``/system/routes``: every route that serves, with its request count so far;
* ``/system/events``: recent events with their causes (``?name=product.*``,
  ``source=``, ``correlation_id=``, ``event_id=``, ``limit=``);
* ``/system/graph``: publishers, subscribers, requesters and responders per name;
* ``/system/metrics``: Prometheus text (``_metrics.py``);
* ``/system/feed``: server-sent events, one per request and per event (``_feed.py``);
* ``/system/dashboard``: the page that shows all of it live (``_dashboard.py``).

Outside development every ``/system/*`` route but ``/system/health`` and ``/system/live`` needs
``SYSTEM_TOKEN``, sent as ``Authorization: Bearer <token>`` or as the
``system_token`` cookie; without a configured token they always answer 401.
``/openapi.json`` says so: outside development each guarded route declares the
``systemToken`` (bearer) and ``systemTokenCookie`` security schemes and its 401;
routes that do not answer JSON declare their content types (HTML, Prometheus
text, ``text/event-stream``, script and style sheet).

What it costs the app: requests are counted by the http tool (one tuple per
request, folded in batches); events by a bus tap (two dict updates). Requests
are followed one by one (for the feed, and to name the request behind an event
in ``/system/events``) only while a feed client is connected.

Settings: ``SYSTEM_TOKEN``; ``SYSTEM_FEED_PAYLOADS`` (show event payloads in the
feed and in ``/system/events``, default true); ``SYSTEM_FEED_BUFFER`` (items
queued per feed client before the oldest is dropped, default 256);
``SYSTEM_FEED_CLIENTS`` (feed clients at once, default 16).
"""

from __future__ import annotations

import functools
import hmac
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Protocol, runtime_checkable

import anyio
import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response

from microcore import Event, Tool
from microcore.tooling import (
    ConfigurationError,
    EventSource,
    KernelView,
    Owner,
    RouteKind,
    ServedRoute,
    SystemStatus,
)
from tools.config import Config
from tools.http import Context, NotFound, Unauthorized
from tools.http.http_tool import Exchange, HttpTool

from ._dashboard import Dashboard
from ._feed import Feed
from ._graph import StaticScan, build_graph
from ._health import Readiness
from ._metrics import Metrics, MetricsText
from ._trace import select, traces

if TYPE_CHECKING:  # the bus is optional: a project without one still has a system tool
    from tools.event_bus import DeliveryOutcome, SubscriptionStats

Handler = Callable[[Any, Context], Awaitable[Any]]

_RECENT_REQUESTS = 500  # requests remembered (while watched) to name an event's request
_OUTBOX_TIMEOUT = 1.0  # s a scrape waits for the outbox depth (the database may be down)

_log = structlog.get_logger("microcore.system", tool="system")

# What /openapi.json says about the routes (the http tool reads a handler's ``openapi``
# mapping): the token guard as two alternative security schemes, and the answers that
# are not JSON.
SECURITY_SCHEMES: dict[str, Any] = {
    "systemToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SYSTEM_TOKEN, sent as 'Authorization: Bearer <token>'",
    },
    "systemTokenCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "system_token",
        "description": "SYSTEM_TOKEN as the system_token cookie (the dashboard's login sets it)",
    },
}
_TOKEN: list[dict[str, list[str]]] = [{"systemToken": []}, {"systemTokenCookie": []}]
_TEXT = {"schema": {"type": "string"}}
_DASHBOARD: dict[str, Any] = {
    "responses": {
        "200": {"description": "The dashboard page", "content": {"text/html": _TEXT}},
    }
}
_DASHBOARD_LOGIN: dict[str, Any] = {
    "responses": {
        "401": {
            "description": "Without the token: a page asking for it (WWW-Authenticate: Bearer)",
            "content": {"text/html": _TEXT},
        }
    }
}
_FEED_EVENT: dict[str, Any] = {  # before OpenAPI 3.2 an event stream's schema is each event's
    "type": "object",
    "properties": {
        "event": {"enum": ["ready", "request", "event", "dropped", "plugins", "reload", "error"]},
        "data": {"type": "string", "description": "a JSON object"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["event", "data"],
}
_FEED: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "Server-sent events: ready, request, event, dropped, plugins, reload",
            "content": {"text/event-stream": {"schema": _FEED_EVENT}},
        }
    }
}
_ASSET: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "The dashboard's script or style sheet",
            "content": {"text/javascript": _TEXT, "text/css": _TEXT},
        }
    }
}


class EventQuery(msgspec.Struct):
    """Filters of ``/system/events``."""

    name: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    event_id: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100


class AssetName(msgspec.Struct):
    asset: str


class RouteRow(msgspec.Struct, kw_only=True):
    """One row of ``/system/routes``: a served route and the requests it answered so far."""

    kind: RouteKind
    label: str
    method: str | None
    path: str | None
    owner: str
    tags: tuple[str, ...]
    summary: str | None
    status_code: int | None
    request_model: str | None
    response_model: str | None
    requests: int
    server_errors: int


@runtime_checkable
class DeliveryCounts(Protocol):
    """What an event bus may report beyond :class:`~microcore.tooling.EventSource`
    (the ``event_bus`` tool does): per-subscription state and per-name outcomes."""

    def subscriptions(self) -> list[SubscriptionStats]: ...

    def outcomes(self) -> list[DeliveryOutcome]: ...


@runtime_checkable
class OutboxDepth(Protocol):
    """What a bus with a transactional outbox reports (the ``event_bus`` tool does)."""

    async def outbox_depth(self) -> int | None: ...


@runtime_checkable
class JobCounts(Protocol):
    """What a scheduler may report (the ``scheduler`` tool does): every job with its counters."""

    def jobs(self) -> Sequence[Any]: ...


class SystemTool(Tool):
    """Health, status, routes, events, graph, metrics and a live dashboard under ``/system``."""

    name = "system"
    reserved_routes = (  # what setup registers, for `microcore check` (a static read)
        "GET /system/health",
        "GET /system/live",
        "GET /system/status",
        "GET /system/routes",
        "GET /system/events",
        "GET /system/graph",
        "GET /system/metrics",
        "GET /system/feed",
        "GET /system/dashboard",
        "GET /system/dashboard/{asset}",
    )

    def __init__(
        self,
        http: HttpTool,
        config: Config,
        kernel: KernelView,
        event_bus: Tool | None = None,
        scheduler: Tool | None = None,
    ) -> None:
        self._http = http
        self._config = config
        self._kernel = kernel
        # what the bus lets others see, as declared contracts (a bus may offer neither)
        self._events = event_bus if isinstance(event_bus, EventSource) else None
        self._counts = event_bus if isinstance(event_bus, DeliveryCounts) else None
        self._jobs = scheduler if isinstance(scheduler, JobCounts) else None
        self._outbox = event_bus if isinstance(event_bus, OutboxDepth) else None
        self._owner = Owner("tools.system")
        self._metrics = Metrics()
        self._feed = Feed()
        self._stats = http.request_stats()  # the http tool's request counters
        self._watching: Callable[[], object] | None = None
        self._dashboard = Dashboard()
        self._static = StaticScan(kernel.root)
        self._recent: deque[Exchange] = deque(maxlen=_RECENT_REQUESTS)
        self._readiness = Readiness(self._running_tools)
        self._undo: list[Callable[[], object]] = []

    async def setup(self) -> None:
        config = self._config
        self._feed = Feed(
            buffer=_positive(config, "SYSTEM_FEED_BUFFER", 256),
            max_clients=_positive(config, "SYSTEM_FEED_CLIENTS", 16),
            payloads=config.get_bool("SYSTEM_FEED_PAYLOADS", True),
            trace_url=config.get("SYSTEM_TRACE_URL") or None,
            on_watch=self._watch_requests,
        )
        self._readiness = Readiness(
            self._running_tools,
            cache=config.get_float("SYSTEM_PROBE_CACHE", 2.0),
            timeout=config.get_float("SYSTEM_PROBE_TIMEOUT", 2.0),
        )
        await anyio.to_thread.run_sync(self._dashboard.load)
        self._owner.activate()
        self._register_routes()
        if self._events is not None:
            self._undo.append(self._events.tap(self._on_event))
        self._kernel.add_reload_listener(self._on_reload)

    def _register_routes(self) -> None:
        api = self._http.bind(self._owner)

        def add(path: str, handler: Handler, summary: str, **options: Any) -> None:
            api.add_endpoint(path, "GET", handler, tags=["system"], summary=summary, **options)

        add(
            "/system/health",
            self._get_health,
            "Readiness: 200, or 503 naming every failed tool and plugin and every backing "
            "service that does not answer now",
        )
        add("/system/live", self._get_live, "Liveness: 200 while the process answers")
        add(
            "/system/status",
            self.guarded(self._get_status),
            "Every tool and plugin with status, error, file and registrations, and every "
            "scheduled job with its last and next run",
        )
        add("/system/routes", self.guarded(self._get_routes), "Every route that serves now")
        add(
            "/system/events",
            self.guarded(self._get_events),
            "Recent events with their causes (request or event) and causal chains",
            request_model=EventQuery,
        )
        add("/system/graph", self.guarded(self._get_graph), "Who publishes and subscribes to what")
        add("/system/metrics", self.guarded(self._get_metrics), "Prometheus text exposition")
        add(
            "/system/feed",
            documented(self.guarded(self._get_feed), _FEED),
            "Live requests and events (text/event-stream)",
        )
        dashboard = [_DASHBOARD, self._token_openapi()]
        if not self._config.development:
            dashboard.append(_DASHBOARD_LOGIN)  # the login page, not the error shape
        add(
            "/system/dashboard",
            documented(self._get_dashboard, *dashboard),
            "The live dashboard (HTML)",
        )
        add(
            "/system/dashboard/{asset}",
            documented(self.guarded(self._get_asset), _ASSET),
            "The dashboard's script and style sheet",
            request_model=AssetName,
        )

    async def shutdown(self) -> None:
        for undo in self._undo:
            undo()
        self._undo.clear()
        self._watch_requests(False)
        await self._owner.release()

    def on_plugins_changed(self) -> None:
        self._feed.push("plugins", {"plugins": len(self._kernel.plugins)})

    # -- access --------------------------------------------------------------------

    def guarded(self, handler: Handler) -> Handler:
        """Wrap a handler so that, outside development, it needs ``SYSTEM_TOKEN``.

        Other tools that add ``/system/*`` routes wrap their handlers with this.
        """

        @functools.wraps(handler)  # keeps the annotations /openapi.json reads (-> MetricsText)
        async def guarded_handler(data: Any, context: Context) -> Any:
            if self._allowed(context):
                return await handler(data, context)
            raise Unauthorized(
                "send SYSTEM_TOKEN as 'Authorization: Bearer <token>' or the system_token "
                "cookie (system routes are open only when MICROCORE_ENV=development)",
                headers={"WWW-Authenticate": 'Bearer realm="microcore system"'},
            )

        return documented(guarded_handler, self._token_openapi())

    def _token_openapi(self) -> dict[str, Any]:
        """The guard as /openapi.json declares it; nothing in development, where it is open."""
        if self._config.development:
            return {}
        return {
            "security": _TOKEN,
            "security_schemes": SECURITY_SCHEMES,
            "responses": {"401": "Unauthorized"},
        }

    def _allowed(self, context: Context) -> bool:
        return self._config.development or self._authorized(context.request)

    def _authorized(self, request: Request) -> bool:
        token = self._config.get("SYSTEM_TOKEN") or ""
        if not token:
            return False
        header = request.headers.get("authorization", "")
        scheme, _, sent = header.partition(" ")
        if scheme.lower() != "bearer" or not sent:
            sent = request.cookies.get("system_token", "")
        # the server decoded the header (and cookie) bytes as latin-1: compare bytes, so a
        # token with non-ASCII characters sent as UTF-8 matches
        sent_bytes = sent.strip().encode("latin-1", errors="replace")
        return hmac.compare_digest(sent_bytes, token.encode("utf-8"))

    # -- observing (hot paths) -------------------------------------------------------

    def _watch_requests(self, watching: bool) -> None:
        """Follow each request only while a feed client is connected (it costs per request)."""
        if watching and self._watching is None:
            self._watching = self._http.observe(self._on_request)
        elif not watching and self._watching is not None:
            self._watching()
            self._watching = None

    def _on_request(self, exchange: Exchange) -> None:
        self._recent.append(exchange)
        if exchange.owner != "tools.system":
            self._feed.request(exchange)  # the dashboard's own traffic stays out of its feed

    def _on_event(self, event: Event) -> None:
        self._metrics.event(event)
        self._feed.event(event)

    def _on_reload(self) -> None:
        self._metrics.reloads += 1
        self._feed.push(
            "reload",
            {"reloaded_at": self._kernel.reloaded_at, "reload_ms": self._kernel.reload_ms},
        )

    # -- handlers --------------------------------------------------------------------

    async def _get_health(self, data: Any, context: Context) -> dict[str, Any]:
        """Readiness: 503 while any tool or plugin is failed or a backing service (database,
        state store, bus) does not answer; probes run at most every ``SYSTEM_PROBE_CACHE`` s."""
        failures = self._kernel.failures()
        services = await self._readiness.problems()
        if not (failures["tools"] or failures["plugins"] or services):
            return {"status": "ok", "tools": [], "plugins": [], "services": {}}
        context.set_status(503)
        named = [f"tool {n}" for n in failures["tools"]]
        named += [f"plugin {n}" for n in failures["plugins"]]
        named += [f"{n} ({why})" for n, why in services.items()]
        return {
            "success": False,
            "error": {"code": "not_ready", "message": "not ready: " + "; ".join(named)},
            "status": "failed",
            **failures,
            "services": services,
        }

    async def _get_live(self, data: Any, context: Context) -> dict[str, Any]:
        """Liveness: the process answers (no probe, never 503 for a backing service)."""
        return {"status": "ok"}

    def _running_tools(self) -> list[tuple[str, Tool]]:
        return [
            (name, record.instance)
            for name, record in sorted(self._kernel.tools.items())
            if record.status == "ok" and record.instance is not None
        ]

    async def _get_status(self, data: Any, context: Context) -> dict[str, Any]:
        """Tools and plugins: status, error (file, line), registrations, boot and reload times;
        scheduled jobs with schedule, last run, duration and error, and next run."""
        body = status_body(self._kernel.status())
        jobs: Sequence[Any] = self._jobs.jobs() if self._jobs is not None else []
        body["jobs"] = msgspec.to_builtins(list(jobs))
        return body

    async def _get_routes(self, data: Any, context: Context) -> dict[str, Any]:
        """Every route that serves: kind, method, path, owner, models and requests so far."""
        counts: dict[tuple[str | None, str | None], tuple[int, int]] = {
            key: (stats.count, sum(n for code, n in stats.statuses.items() if code >= 500))
            for key, stats in self._stats.routes().items()
        }
        rows = [_route_row(route, counts) for route in self._http.routes()]
        rows.sort(key=lambda r: (str(r.path), str(r.method)))
        return {"routes": rows}

    async def _get_events(self, data: EventQuery, context: Context) -> dict[str, Any]:
        """Recent events (oldest first) with ``caused_by`` and ``chain``, and one trace per
        correlation: the request that started it (when known) and the tree of events."""
        if self._events is None:
            return {"events": [], "traces": [], "history": 0}
        history = self._events.history()
        found = select(
            history,
            name=data.name,
            source=data.source,
            correlation_id=data.correlation_id,
            event_id=data.event_id,
        )[-data.limit :]
        rows, trees = traces(found, history, self._recent_requests(), payloads=self._feed.payloads)
        return {"events": rows, "traces": trees, "history": len(history)}

    def _recent_requests(self) -> dict[str, dict[str, Any]]:
        return {
            ex.request_id: {
                "method": ex.method,
                "path": ex.path,
                "route": ex.route,
                "status": ex.status,
                "duration_ms": round(ex.duration * 1000, 3),
                "owner": ex.owner,
            }
            for ex in self._recent
        }

    async def _get_graph(self, data: Any, context: Context) -> dict[str, Any]:
        """Nodes, events (publishers -> subscribers) and requests (requesters -> responders)."""
        plugins = self._kernel.plugins
        return {
            **build_graph(
                plugins=self._kernel.status().plugins,  # tools' hosted plugins too
                static=self._static.calls(plugins),
                flows=self._events.flows() if self._events is not None else None,
                counts=self._metrics.published(),
                sent=self._metrics.dead_letter_sources,
            ),
            "subscriptions": self._counts.subscriptions() if self._counts is not None else [],
            "outbox": await self._outbox_depth(),
        }

    async def _outbox_depth(self) -> int | None:
        """Pending outbox rows; None without an outbox or when the database does not answer
        within ``_OUTBOX_TIMEOUT`` (a scrape never waits on it longer)."""
        if self._outbox is None:
            return None
        with anyio.move_on_after(_OUTBOX_TIMEOUT):
            try:
                return await self._outbox.outbox_depth()
            except Exception as exc:  # noqa: BLE001 - a metric must not fail the scrape
                _log.warning("outbox_depth_failed", error=f"{type(exc).__name__}: {exc}")
        return None

    async def _get_metrics(self, data: Any, context: Context) -> MetricsText:
        """Prometheus text exposition format 0.0.4."""
        text = self._metrics.render(
            requests=self._stats,
            status=self._kernel.status(),
            jobs=self._jobs.jobs() if self._jobs is not None else [],
            subscriptions=self._counts.subscriptions() if self._counts is not None else [],
            outcomes=self._counts.outcomes() if self._counts is not None else [],
            feed=self._feed.stats(),
            outbox=await self._outbox_depth(),
        )
        return MetricsText(text)

    async def _get_feed(self, data: Any, context: Context) -> Response:
        """Live requests and events as server-sent events (``request``, ``event``,
        ``dropped``, ``plugins``, ``reload``)."""
        return self._http.event_stream(self._feed.stream(context), context)

    async def _get_dashboard(self, data: Any, context: Context) -> Response:
        """The dashboard page; outside development without the token, a page asking for it."""
        if self._allowed(context):
            return self._dashboard.page()
        return self._dashboard.login()

    async def _get_asset(self, data: AssetName, context: Context) -> Response:
        response = self._dashboard.response(data.asset)
        if response is None:
            raise NotFound(
                f"no dashboard asset {data.asset!r}; "
                f"there are: {', '.join(self._dashboard.names())}"
            )
        return response


def documented(handler: Handler, *declared: Mapping[str, Any]) -> Handler:
    """``handler`` wrapped in a function whose ``openapi`` mapping (what /openapi.json adds to
    the generated operation, see ``tools/http/_openapi.py``) merges the handler's own and
    ``declared``, in order: ``responses`` are merged by status code, other keys replaced."""

    @functools.wraps(handler)
    async def handler_with_openapi(data: Any, context: Context) -> Any:
        return await handler(data, context)

    merged: dict[str, Any] = {}
    for part in (getattr(handler, "openapi", None) or {}, *declared):
        for key, value in part.items():
            if key == "responses":
                merged["responses"] = {**merged.get("responses", {}), **value}
            else:
                merged[key] = value
    handler_with_openapi.__dict__["openapi"] = merged
    return handler_with_openapi


def status_body(status: SystemStatus) -> dict[str, Any]:
    """``/system/status``'s JSON: each plugin's registrations as ``<kind>s`` lists
    (``routes`` and ``subscriptions`` always there)."""
    body: dict[str, Any] = msgspec.to_builtins(status)
    for plugin in body["plugins"].values():
        kinds = plugin.pop("registrations")
        plugin["routes"], plugin["subscriptions"] = [], []
        plugin.update((f"{kind}s", labels) for kind, labels in kinds.items())
    return body


def _positive(config: Config, key: str, default: int) -> int:
    value = config.get_int(key, default)
    if value < 1:
        raise ConfigurationError(f"{key} must be a positive integer, got {value}")
    return value


def _route_row(
    route: ServedRoute, counts: dict[tuple[str | None, str | None], tuple[int, int]]
) -> RouteRow:
    """``route`` with its requests so far and how many of them failed (5xx)."""
    if route.kind is RouteKind.STATIC:  # counted under its template, GET and HEAD
        template = f"{route.path}/{{path}}"
        pairs = [counts.get((m, template), (0, 0)) for m in ("GET", "HEAD")]
        served, failed = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    else:
        served, failed = counts.get((route.method, route.path), (0, 0))
    return RouteRow(
        kind=route.kind,
        label=route.label,
        method=route.method,
        path=route.path,
        owner=route.owner,
        tags=route.tags,
        summary=route.summary,
        status_code=route.status_code,
        request_model=_type_name(route.request_model),
        response_model=_type_name(route.response_model),
        requests=served,
        server_errors=failed,
    )


def _type_name(model: Any) -> str | None:
    if model is None:
        return None
    return str(getattr(model, "__name__", None) or repr(model))
