"""Typed contracts between tools, and between tools and microcore's developer tooling.

A tool that serves HTTP routes, a tool that carries events, and the kernel view
tools receive are declared here as Protocols and Structs, so the system tool,
``microcore.testing`` and the manifest read declared types instead of probing
with ``getattr`` or reading dicts by key. Any tool may implement them; none is
required to (a project without an event bus simply has no :class:`EventSource`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from ._core.event import Event
from ._core.records import PluginRecord, ToolRecord
from ._core.status import SystemStatus

__all__ = (
    "EventFlows",
    "EventSource",
    "KernelView",
    "RouteKind",
    "ServedRoute",
    "ServesRoutes",
)


class RouteKind(StrEnum):
    """What a served route is."""

    ENDPOINT = "route"
    WEBSOCKET = "websocket"
    SSE = "sse"
    STATIC = "static"
    MIDDLEWARE = "middleware"


class ServedRoute(msgspec.Struct, frozen=True, kw_only=True):
    """One registration an HTTP-serving tool serves now (``/system/routes``, AI_CONTEXT.md).

    ``method`` is None for websockets, static mounts and middleware; ``path`` is the
    template (``/products/{product_id:int}``) or a static mount's prefix.
    """

    kind: RouteKind
    label: str
    owner: str
    method: str | None = None
    path: str | None = None
    tags: tuple[str, ...] = ()
    summary: str | None = None
    status_code: int | None = None
    request_model: Any = None
    response_model: Any = None


@runtime_checkable
class ServesRoutes(Protocol):
    """A tool that serves routes lists them (the http tool does)."""

    def routes(self) -> list[ServedRoute]:
        """Every registration that serves now."""
        ...


class EventFlows(msgspec.Struct, frozen=True, kw_only=True):
    """Who talks to whom on the bus, seen at run time."""

    publishers: dict[str, list[str]]  # event name -> sources that published it
    subscribers: dict[str, list[str]]  # pattern -> plugins subscribed (active only)
    responders: dict[str, list[str]]  # request name -> plugins that answer it


@runtime_checkable
class EventSource(Protocol):
    """A tool that carries events lets others watch them (the event bus does)."""

    def tap(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` synchronously for every event published; returns ``remove``."""
        ...

    def history(
        self, *, correlation_id: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Recent events, oldest first."""
        ...

    def flows(self) -> EventFlows:
        """Who published, subscribed to and answered which names."""
        ...


class KernelView(Protocol):
    """What a tool may see of the kernel: it names ``kernel`` in its constructor to get it."""

    @property
    def root(self) -> Path:
        """The project folder."""
        ...

    @property
    def settings(self) -> Mapping[str, str]:
        """Environment, ``.env`` and overrides, merged."""
        ...

    @property
    def plugins(self) -> Mapping[str, PluginRecord]:
        """Loaded (and failed) plugins by identity."""
        ...

    @property
    def tools(self) -> Mapping[str, ToolRecord]:
        """Discovered (and failed) tools by name."""
        ...

    @property
    def reloaded_at(self) -> float | None:
        """When the last hot reload finished (epoch seconds), if any."""
        ...

    @property
    def reload_ms(self) -> float | None:
        """How long the last hot reload took."""
        ...

    def status(self) -> SystemStatus:
        """Every tool and plugin with status and error: the body of ``/system/status``."""
        ...

    def failures(self) -> dict[str, list[str]]:
        """Names of failed tools and plugins."""
        ...

    def start_background(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None
    ) -> None:
        """Run ``fn(*args)`` for the app's lifetime; it is cancelled at shutdown."""
        ...

    def add_reload_listener(self, listener: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``listener`` after every hot reload."""
        ...
