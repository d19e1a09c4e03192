"""One OpenTelemetry server span per HTTP request, when tracing is on (``TRACING``).

The span follows the HTTP semantic conventions: named ``"{method} {route}"`` after the route
template (``GET /products/{product_id:int}``), never the raw path; it continues the caller's
``traceparent`` header, and a 5xx answer marks it failed. Everything inside the request (bus
publishes, statements, log lines) happens while it is current.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from microcore.tooling import TRACING

from ._routing import RouteTable

__all__ = ("traced_http",)

Serve = Callable[[Scope, Receive, Send], Awaitable[None]]


async def traced_http(
    table: RouteTable, serve: Serve, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve the request inside its server span."""
    method, headers = scope["method"], scope["headers"]
    parent = None
    agent = None
    for name, value in headers:
        if name == b"traceparent":
            parent = value.decode("latin-1")
        elif name == b"user-agent":
            agent = value.decode("latin-1")
    found = table.match(scope["path"])
    route = found[0].compiled.path if found is not None else None
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    if route is not None:
        attributes["http.route"] = route
    if agent is not None:
        attributes["user_agent.original"] = agent
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    name = f"{method} {route}" if route is not None else method
    with TRACING.span(name, kind="server", attributes=attributes, parent=parent) as span:

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    TRACING.fail(span, f"HTTP {status}")
            await send(message)

        await serve(scope, receive, observed)
