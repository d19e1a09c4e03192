"""After each answered request: request counters, the access log line, tool observers.

Nothing here runs unless ``HTTP_ACCESS_LOG`` is on, a tool asked for request
counters (``HttpTool.request_stats``) or registered an observer
(``HttpTool.observe``): the dispatcher checks one attribute (``observing``) per
request and only then takes the time. An :class:`Exchange` is built only for
observers; the counters and the access line (a prepared call, its values by
position) need none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microcore.tooling import AccessLogger

from ._stats import RequestStats

__all__ = ("Exchange", "Observer", "Observers")

_FIELDS = ("method", "path", "status", "duration_ms", "request_id", "plugin")  # http_request's


class Exchange:
    """One answered request, as an observer sees it.

    ``route`` is the template that matched (``/products/{product_id:int}``, or a
    static mount's ``/assets/{path}``), ``None`` when nothing matched;
    ``owner`` the identity that registered it; ``duration`` in seconds, from the
    first byte of headers read to the last byte of the response sent.
    """

    __slots__ = ("duration", "method", "owner", "path", "request_id", "route", "status")

    def __init__(
        self,
        method: str,
        path: str,
        route: str | None,
        status: int,
        duration: float,
        request_id: str,
        owner: str | None,
    ) -> None:
        self.method = method
        self.path = path
        self.route = route
        self.status = status
        self.duration = duration
        self.request_id = request_id
        self.owner = owner

    def __repr__(self) -> str:
        return f"<Exchange {self.method} {self.path} {self.status} {self.duration * 1000:.2f} ms>"


Observer = Callable[[Exchange], object]


class Observers:
    """The counters, the access log switch and the observer callbacks, read by the dispatcher."""

    def __init__(self, log: Any) -> None:
        self._log = log
        # The access line, by position: method, path, status, duration_ms, request_id, plugin.
        self.access: Callable[[str, str, int, float, str, str | None], None] | None = None
        self.stats: RequestStats | None = None
        self.callbacks: tuple[Observer, ...] = ()
        self.observing = False  # the one attribute the dispatcher checks per request
        self.notifying = False  # the access line or observer callbacks: notify() has work

    def _update(self) -> None:
        self.notifying = self.access is not None or bool(self.callbacks)
        self.observing = self.notifying or self.stats is not None

    def set_access_log(self, enabled: bool) -> None:
        """Switch the access log; call after logging is configured (the tool's setup).

        Its lines are prepared once (:meth:`AccessLogger.prepare`) and may be dropped by the
        log writer under overload (counted in /system/metrics); error lines never are."""
        self.access = None
        if enabled:
            self.access = AccessLogger(tool="http").prepare("http_request", _FIELDS)
        self._update()

    def counters(self) -> RequestStats:
        """The request counters, started on first use."""
        if self.stats is None:
            self.stats = RequestStats()
            self._update()
        return self.stats

    def add(self, callback: Observer) -> Callable[[], None]:
        self.callbacks = (*self.callbacks, callback)
        self._update()

        def remove() -> None:
            self.callbacks = tuple(c for c in self.callbacks if c is not callback)
            self._update()

        return remove

    def notify(
        self,
        method: str,
        path: str,
        route: str | None,
        status: int,
        duration: float,
        request_id: str,
        owner: str | None,
    ) -> None:
        """Write the access line, then call every observer with an :class:`Exchange` (each
        failure logged, never raised)."""
        if self.access is not None:
            # duration_ms: 3 decimals, cheaper than round()
            self.access(method, path, status, int(duration * 1_000_000) / 1000, request_id, owner)
        if self.callbacks:
            self.call_observers(Exchange(method, path, route, status, duration, request_id, owner))

    def call_observers(self, exchange: Exchange) -> None:
        """Call every observer with ``exchange`` (each failure logged, never raised); built only
        when there are observers."""
        for callback in self.callbacks:
            try:
                callback(exchange)
            except Exception:  # noqa: BLE001 - isolation boundary: an observer must not break serving
                self._log.exception(
                    "http_observer_failed",
                    observer=getattr(callback, "__qualname__", repr(callback)),
                    request_id=exchange.request_id,
                )
