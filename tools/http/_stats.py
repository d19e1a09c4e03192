"""Request counters per method and route template: answers by status and a latency histogram.

Kept by the dispatcher itself, and only once a tool asked for them
(``HttpTool.request_stats()``, e.g. the system tool for ``/system/metrics``).
Per request the dispatcher appends one tuple to ``pending`` (no callback, no
object of ours): the tuples are folded into the counters every ``FLUSH_AT``
requests and whenever the counters are read, which costs less per request
than counting each one as it comes.
Labels stay bounded: routes are the registered templates (``None`` when
nothing matched), methods other than the standard ones count as ``OTHER``, and
past ``MAX_SERIES`` (method, route) pairs new ones count under ``_other``.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ("BUCKETS", "FLUSH_AT", "MAX_SERIES", "RequestStats", "RouteStats")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_SERIES = 1_000
FLUSH_AT = 256  # pending requests folded in at once (bounds the pending list)
OTHER = "_other"
_METHODS = frozenset(("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"))


class RouteStats:
    """What one (method, route template) answered."""

    __slots__ = ("buckets", "count", "statuses", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket (not cumulative); the last is +Inf
        self.count = 0
        self.total = 0.0  # seconds
        self.statuses: dict[int, int] = {}


class RequestStats:
    """Counters for every (method, route template) answered since they were asked for."""

    bounds = BUCKETS  # upper bounds (seconds) of the histogram buckets; one more for +Inf

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str | None], RouteStats] = {}
        # (method, route template, status, seconds) of requests not folded in yet
        self.pending: list[tuple[str, str | None, int, float]] = []

    def routes(self) -> dict[tuple[str, str | None], RouteStats]:
        """(method, route template) -> counters, every request answered so far included."""
        self.flush()
        return self._routes

    def flush(self) -> None:
        """Fold the pending requests into the counters."""
        pending = self.pending
        if pending:
            add = self.add
            for method, route, status, duration in pending:
                add(method, route, status, duration)
            pending.clear()

    def add(self, method: str, route: str | None, status: int, duration: float) -> None:
        """Count one answered request (``duration`` in seconds)."""
        stats = self._routes.get((method, route))
        if stats is None:
            stats = self._new(method, route)
        stats.count += 1
        stats.total += duration
        stats.buckets[bisect_left(BUCKETS, duration)] += 1
        statuses = stats.statuses
        statuses[status] = statuses.get(status, 0) + 1

    def _new(self, method: str, route: str | None) -> RouteStats:
        if method not in _METHODS:
            method = "OTHER"
        if len(self._routes) >= MAX_SERIES:
            route = OTHER
        stats = self._routes.get((method, route))
        if stats is None:
            stats = self._routes[(method, route)] = RouteStats()
        return stats
