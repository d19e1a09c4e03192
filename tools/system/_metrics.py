"""Counters rendered as Prometheus text (exposition format 0.0.4).

Requests are counted by the http tool itself (``request_stats()``: by method,
route *template* and status, with a latency histogram per method and route);
events are counted here by name, from the bus tap. Label values come from what
the code registered (route templates, event names, plugin identities), never
from raw request paths, and every family stops adding series at
``MAX_SERIES``: past it, new label values are counted under ``_other``, so a
client sending random paths or a plugin inventing names cannot grow memory.

Scrape-time families (subscriptions, tool and plugin health, reloads) are read
from the kernel and the bus when ``/system/metrics`` is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from microcore import Event
from microcore.events import DLQ_PREFIX
from microcore.tooling import SystemStatus, dropped_log_lines

if TYPE_CHECKING:
    from tools.event_bus import DeliveryOutcome, SubscriptionStats
    from tools.http.http_tool import RequestStats

__all__ = ("CONTENT_TYPE", "MAX_SERIES", "Metrics", "MetricsText", "escape")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_SERIES = 1_000  # label sets per family; past it new values count under "_other"
OTHER = "_other"
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)


class MetricsText(Response):
    """The exposition as a response; its class declares the content type (also to OpenAPI)."""

    media_type = CONTENT_TYPE


class Metrics:
    """Event counters (fed by the bus tap) and the renderer of every family."""

    def __init__(self) -> None:
        self._published: dict[str, int] = {}
        self._dead: dict[tuple[str, str], int] = {}
        # the bus publishes dead letters itself, outside its own who-published graph
        self.dead_letter_sources: dict[str, set[str]] = {}
        self.reloads = 0

    # -- feeding (hot paths: plain dict operations) --------------------------------

    def event(self, event: Event) -> None:
        """Count one published event (and, for ``_dlq.<name>``, one dead letter)."""
        name = event.name
        if name.startswith(DLQ_PREFIX):
            self._dead_letter(event)
        published = self._published
        if name not in published and len(published) >= MAX_SERIES:
            name = OTHER
        published[name] = published.get(name, 0) + 1

    def _dead_letter(self, event: Event) -> None:
        payload = event.payload
        subscriber = payload.get("subscriber") if isinstance(payload, dict) else None
        key = (event.name[len(DLQ_PREFIX) :], str(subscriber or ""))
        if key not in self._dead and len(self._dead) >= MAX_SERIES:
            key = (OTHER, OTHER)
        self._dead[key] = self._dead.get(key, 0) + 1
        if len(self.dead_letter_sources) < MAX_SERIES:
            self.dead_letter_sources.setdefault(event.name, set()).add(event.source)

    def published(self) -> dict[str, int]:
        """Events published by name since boot."""
        return dict(self._published)

    # -- rendering ---------------------------------------------------------------

    def render(
        self,
        *,
        requests: RequestStats,
        status: SystemStatus,
        subscriptions: Iterable[SubscriptionStats],
        outcomes: Iterable[DeliveryOutcome],
        feed: Mapping[str, int],
        jobs: Iterable[Any] = (),
        outbox: int | None = None,
    ) -> str:
        """The Prometheus text of every family; ``requests`` is the http tool's
        ``request_stats()``, ``status`` is ``kernel.status()``, ``subscriptions`` and
        ``outcomes`` are the bus's, ``outbox`` its pending outbox rows (None: no outbox)."""
        lines: list[str] = []
        lines += _http(requests)
        lines += self._events(list(subscriptions), list(outcomes))
        lines += _kernel(status)
        lines += _jobs(list(jobs))
        if outbox is not None:  # the bus's transactional outbox (publish(..., transaction=tx))
            lines += _family(
                "microcore_outbox_pending",
                "gauge",
                "Events committed with a transaction and not relayed to the bus yet (all "
                "replicas).",
                [({}, outbox)],
            )
        lines += _family(
            "microcore_reloads_total",
            "counter",
            "Hot reloads applied since boot (failed ones included).",
            [({}, self.reloads)],
        )
        lines += _family(
            "microcore_feed_clients",
            "gauge",
            "Dashboard live-feed clients connected now.",
            [({}, feed["clients"])],
        )
        lines += _family(
            "microcore_feed_dropped_total",
            "counter",
            "Live-feed items dropped because a client read too slowly (oldest first).",
            [({}, feed["dropped"])],
        )
        lines += _family(
            "microcore_log_lines_dropped_total",
            "counter",
            "Access log lines dropped because the log stream fell behind (errors never are).",
            [({}, dropped_log_lines())],
        )
        return "\n".join(lines) + "\n"

    def _events(
        self, subscriptions: list[SubscriptionStats], outcomes: list[DeliveryOutcome]
    ) -> Iterator[str]:
        yield from _family(
            "microcore_events_published_total",
            "counter",
            "Events published (requests included), by name.",
            [({"name": n}, c) for n, c in sorted(self._published.items())],
        )

        yield from _family(
            "microcore_events_delivered_total",
            "counter",
            "Events handled successfully, by event name and subscriber.",
            [({"name": o.name, "subscriber": o.subscriber}, o.delivered) for o in outcomes],
        )
        yield from _family(
            "microcore_event_handler_failures_total",
            "counter",
            "Events whose handler failed every attempt, by event name and subscriber.",
            [({"name": o.name, "subscriber": o.subscriber}, o.failed) for o in outcomes],
        )
        yield from _family(
            "microcore_event_queue_depth",
            "gauge",
            "Events waiting in a subscription's buffer now, by subscriber and name or pattern.",
            [
                ({"subscriber": subscriber, "pattern": pattern}, queued)
                for (subscriber, pattern), queued in _queued(subscriptions).items()
            ],
        )
        yield from _family(
            "microcore_events_dead_lettered_total",
            "counter",
            "Events sent to _dlq.<name>, by original name and failing subscriber.",
            [({"name": n, "subscriber": s}, c) for (n, s), c in sorted(self._dead.items())],
        )


def _queued(subscriptions: list[SubscriptionStats]) -> dict[tuple[str, str], int]:
    """Events waiting, per subscriber and pattern: one plugin may subscribe two handlers
    to one pattern, and a reload briefly lists the old and new subscription side by side;
    a series must appear once."""
    queued: dict[tuple[str, str], int] = {}
    for sub in subscriptions:
        key = (sub.subscriber, sub.pattern)
        queued[key] = queued.get(key, 0) + sub.queued
    return queued


def _http(requests: RequestStats) -> Iterator[str]:
    routes = sorted(
        ((m, UNMATCHED if r is None else r), stats) for (m, r), stats in requests.routes().items()
    )
    yield from _family(
        "microcore_http_requests_total",
        "counter",
        "HTTP requests answered, by method, route template and status.",
        [
            ({"method": m, "route": r, "status": str(code)}, n)
            for (m, r), stats in routes
            for code, n in sorted(stats.statuses.items())
        ],
    )
    name = "microcore_http_request_duration_seconds"
    yield f"# HELP {name} Time to answer an HTTP request, by method and route template."
    yield f"# TYPE {name} histogram"
    for (method, route), stats in routes:
        labels = f'method="{escape(method)}",route="{escape(route)}"'
        running = 0
        for bound, count in zip((*requests.bounds, None), stats.buckets, strict=True):
            running += count
            le = "+Inf" if bound is None else repr(bound)
            yield f'{name}_bucket{{{labels},le="{le}"}} {running}'
        yield f"{name}_sum{{{labels}}} {_number(stats.total)}"
        yield f"{name}_count{{{labels}}} {stats.count}"


def _kernel(status: SystemStatus) -> Iterator[str]:
    yield from _family(
        "microcore_tool_up",
        "gauge",
        "1 when the tool set up, 0 when it failed.",
        [({"tool": n}, int(t.status == "ok")) for n, t in sorted(status.tools.items())],
    )
    yield from _family(
        "microcore_plugin_up",
        "gauge",
        "1 when the plugin serves, 0 when it failed.",
        [({"plugin": n}, int(p.status == "ok")) for n, p in sorted(status.plugins.items())],
    )
    yield from _family(
        "microcore_reload_errors",
        "gauge",
        "Changed plugin files whose new version failed (the previous one keeps serving).",
        [({}, len(status.reload_errors))],
    )
    for when, name, help_text in (
        (status.booted_at, "microcore_boot_timestamp_seconds", "When the app finished booting."),
        (
            status.reloaded_at,
            "microcore_last_reload_timestamp_seconds",
            "When the last reload ran.",
        ),
    ):
        if when is not None:
            yield from _family(name, "gauge", help_text, [({}, when)])
    if status.reload_ms is not None:
        yield from _family(
            "microcore_last_reload_duration_seconds",
            "gauge",
            "How long the last hot reload took.",
            [({}, status.reload_ms / 1000)],
        )


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if labels:
            inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            lines.append(f"{name} {_number(value)}")
    return lines


def escape(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _jobs(jobs: list[Any]) -> list[str]:
    """The scheduler's jobs (``JobStats``: owner, name, runs, failures, skips, running)."""
    rows = [({"plugin": j.owner, "job": j.name}, j) for j in jobs]
    counters = (
        ("runs", "Finished runs of scheduled jobs."),
        ("failures", "Runs of scheduled jobs that raised."),
        ("skips", "Due times skipped because the job's previous run was still going."),
    )
    lines: list[str] = []
    for field, text in counters:
        samples = [(labels, getattr(job, field)) for labels, job in rows]
        lines += _family(f"microcore_job_{field}_total", "counter", text, samples)
    running = [(labels, int(job.running)) for labels, job in rows]
    lines += _family("microcore_job_running", "gauge", "Jobs running now (1) or not.", running)
    return lines
