"""/system/metrics: Prometheus text format 0.0.4, parsed back, with bounded label sets."""

from __future__ import annotations

import math
import re
import textwrap
from collections import Counter
from types import SimpleNamespace
from typing import Any

import httpx

from microcore import Event
from microcore._dev.reload import Reloader
from microcore.testing import start_app
from microcore.tooling import SystemStatus
from tests.conftest import ProjectFactory
from tests.support import eventually
from tests.tools.system.conftest import BROKEN, PRODUCTION, SHOP, TOKEN, Boot
from tools.http._stats import FLUSH_AT, RequestStats
from tools.system._metrics import MAX_SERIES, Metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]

EMPTY_STATUS = SystemStatus(
    tools={},
    plugins={},
    booted_at=None,
    boot_ms=None,
    reloaded_at=None,
    reload_ms=None,
    reload_errors={},
)


def parse(text: str) -> tuple[dict[str, str], Series]:
    """Parse exposition text strictly: families typed before use, unique series, valid labels."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    series: Series = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped, f"HELP twice for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"TYPE twice for {name}"
            assert kind in _SUFFIXES, line
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, _, inner, value = match.groups()
        family = next((f for f, k in types.items() for s in _SUFFIXES[k] if name == f + s), None)
        assert family is not None, f"{name} has no TYPE line before it"
        labels: list[tuple[str, str]] = []
        rest = inner or ""
        while rest:
            found = _LABEL.match(rest)
            assert found, f"bad labels in {line!r}"
            labels.append((found.group(1), found.group(2)))
            rest = rest[found.end() :]
        key = (name, tuple(labels))
        assert key not in series, f"duplicate series {key}"
        series[key] = float(value)
    return types, series


def samples(
    series: Series, metric: str, /, **labels: str
) -> dict[tuple[tuple[str, str], ...], float]:
    """The series of ``name`` whose labels include ``labels``."""
    return {
        lab: v
        for (n, lab), v in series.items()
        if n == metric and all((k, w) in lab for k, w in labels.items())
    }


def value(series: Series, metric: str, /, **labels: str) -> float:
    found = samples(series, metric, **labels)
    assert len(found) == 1, f"{metric}{labels}: {found}"
    return next(iter(found.values()))


async def scrape(system: Any) -> tuple[dict[str, str], Series]:
    response = await system.client.get("/system/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


async def test_metrics_count_requests_by_route_template_and_status(boot: Boot) -> None:
    """Requests count under their route template, never the raw path; unrouted as 'unmatched'."""
    system = await boot()
    for order_id in (1, 2, 3):
        await system.client.get(f"/orders/{order_id}")
    await system.client.get("/boom")
    await system.client.get("/no/such/path/42")
    await system.client.delete("/orders/1")  # 405: the path exists, the method does not
    types, series = await scrape(system)
    assert types["microcore_http_requests_total"] == "counter"
    total = "microcore_http_requests_total"
    assert value(series, total, route="/orders/{order_id:int}", status="200") == 3
    assert value(series, total, route="/boom", status="500") == 1
    assert value(series, total, route="unmatched", status="404") == 1
    assert value(series, total, method="DELETE", route="unmatched", status="405") == 1
    routes = {dict(lab)["route"] for lab in samples(series, total)}
    assert not any(r.startswith("/orders/1") or r.startswith("/no/") for r in routes)


async def test_metrics_count_every_request_past_the_batch_size(boot: Boot) -> None:
    """Counts stay exact however many requests wait to be folded in (batches of FLUSH_AT)."""
    system = await boot()
    total = FLUSH_AT + FLUSH_AT // 2
    for n in range(total):
        await system.client.get(f"/orders/{n}")
    _, series = await scrape(system)
    assert value(series, "microcore_http_requests_total", route="/orders/{order_id:int}") == total
    routes = (await system.client.get("/system/routes")).json()["routes"]
    (show,) = [r for r in routes if r["label"] == "GET /orders/{order_id:int}"]
    assert show["requests"] == total


async def test_metrics_latency_histogram_is_cumulative_and_matches_count(boot: Boot) -> None:
    """Each route's buckets only grow, end with +Inf equal to _count, and _sum is positive."""
    system = await boot()
    for _ in range(5):
        await system.client.get("/orders/7")
    types, series = await scrape(system)
    name = "microcore_http_request_duration_seconds"
    assert types[name] == "histogram"
    buckets = samples(series, name + "_bucket", route="/orders/{order_id:int}")

    def bound(labels: tuple[tuple[str, str], ...]) -> float:
        le = dict(labels)["le"]
        return math.inf if le == "+Inf" else float(le)

    ordered = sorted(buckets.items(), key=lambda kv: bound(kv[0]))
    counts = [v for _, v in ordered]
    assert counts == sorted(counts)
    assert dict(ordered[-1][0])["le"] == "+Inf"
    assert counts[-1] == 5
    assert value(series, name + "_count", route="/orders/{order_id:int}") == 5
    assert value(series, name + "_sum", route="/orders/{order_id:int}") > 0


async def test_metrics_count_events_deliveries_failures_and_dead_letters(boot: Boot) -> None:
    """Published events by name, deliveries and failures by subscriber, dead letters by name."""
    system = await boot()
    await system.client.post("/orders", json={"item": "pen"})
    await system.client.post("/orders", json={"item": "bad"})
    await system.published("_dlq.invoice.created")
    await system.settled()
    _, series = await scrape(system)
    assert value(series, "microcore_events_published_total", name="order.placed") == 2
    assert value(series, "microcore_events_published_total", name="price.quote") == 2
    delivered = "microcore_events_delivered_total"
    assert value(series, delivered, name="order.placed", subscriber="shop.BillingPlugin") == 2
    assert value(series, delivered, name="price.quote", subscriber="shop.PricePlugin") == 2
    # a wildcard subscriber is counted by the names it handled, not by its pattern
    assert value(series, delivered, name="invoice.created", subscriber="shop.AuditPlugin") == 1
    failures = "microcore_event_handler_failures_total"
    assert value(series, failures, name="invoice.created", subscriber="shop.AuditPlugin") == 1
    assert value(series, failures, name="order.placed", subscriber="shop.BillingPlugin") == 0
    dead = "microcore_events_dead_lettered_total"
    assert value(series, dead, name="invoice.created", subscriber="shop.AuditPlugin") == 1
    assert value(series, "microcore_event_queue_depth", subscriber="shop.AuditPlugin",
                 pattern="invoice.*") == 0  # fmt: skip


async def test_metrics_show_tool_and_plugin_health(boot: Boot) -> None:
    """microcore_tool_up and microcore_plugin_up are 1 when serving, 0 when failed."""
    system = await boot(files=BROKEN)
    _, series = await scrape(system)
    assert value(series, "microcore_tool_up", tool="system") == 1
    assert value(series, "microcore_plugin_up", plugin="shop.OrderPlugin") == 1
    assert value(series, "microcore_plugin_up", plugin="shop.BrokenPlugin") == 0
    assert value(series, "microcore_boot_timestamp_seconds") > 0


async def test_metrics_count_reloads(boot: Boot) -> None:
    """Each hot reload adds one to microcore_reloads_total and sets the last reload's time;
    a reloaded plugin's delivery counters carry on from where they were."""
    system = await boot()
    await system.client.post("/orders", json={"item": "pen"})
    _, before = await scrape(system)
    assert value(before, "microcore_reloads_total") == 0
    quotes = {"name": "price.quote", "subscriber": "shop.PricePlugin"}
    assert value(before, "microcore_events_delivered_total", **quotes) == 1
    assert not samples(before, "microcore_last_reload_timestamp_seconds")
    path = system.kernel.root / "domains/shop/plugins/price_plugin.py"
    path.write_text(
        textwrap.dedent(SHOP["domains/shop/plugins/price_plugin.py"]).replace("3.5", "4")
    )
    report = await Reloader(system.kernel).apply([path])
    assert report.loaded == ["shop.PricePlugin"]
    await system.client.post("/orders", json={"item": "ink"})
    _, after = await scrape(system)
    assert value(after, "microcore_events_delivered_total", **quotes) == 2
    assert value(after, "microcore_reloads_total") == 1
    assert value(after, "microcore_last_reload_timestamp_seconds") > 0
    assert value(after, "microcore_last_reload_duration_seconds") >= 0


async def test_metrics_label_sets_stay_bounded_under_random_paths_and_methods(boot: Boot) -> None:
    """Hundreds of random paths and odd methods add at most one 'unmatched' series per method."""
    system = await boot()
    for n in range(200):
        await system.client.get(f"/random/{n}")
        await system.client.request("BREW", f"/pot/{n}")
    _, series = await scrape(system)
    unmatched = samples(series, "microcore_http_requests_total", route="unmatched")
    assert {dict(lab)["method"] for lab in unmatched} == {"GET", "OTHER"}
    assert sum(unmatched.values()) == 400


def event(name: str) -> Event:
    return Event(name=name, payload={}, id="1", correlation_id="c", source="test", timestamp=0.0)


def render(metrics: Metrics, requests: RequestStats) -> str:
    """The text of ``metrics`` with no kernel, bus or feed behind it."""
    return metrics.render(
        requests=requests,
        status=EMPTY_STATUS,
        subscriptions=[],
        outcomes=[],
        feed={"clients": 0, "dropped": 0},
    )


def test_metrics_new_names_past_the_cap_count_as_other() -> None:
    """Past MAX_SERIES names, new event names and routes are counted under '_other'."""
    metrics, requests = Metrics(), RequestStats()
    for n in range(MAX_SERIES + 10):
        metrics.event(event(f"made.up{n}"))
        requests.add("GET", f"/r{n}", 200, 0.001)
    published = metrics.published()
    assert len(published) == MAX_SERIES + 1
    assert published["_other"] == 10
    _, series = parse(render(metrics, requests))
    assert value(series, "microcore_http_requests_total", route="_other") == 10


def test_metrics_escape_label_values() -> None:
    """Quotes, backslashes and newlines in label values are escaped as the format requires."""
    metrics = Metrics()
    metrics.event(event('odd"name\\with\nbreaks'))
    text = render(metrics, RequestStats())
    assert 'name="odd\\"name\\\\with\\nbreaks"' in text
    parse(text)


TWO_HANDLERS = {
    "domains/shop/plugins/ledger_plugin.py": """
    from microcore import Plugin

    class LedgerPlugin(Plugin):
        def __init__(self, event_bus):
            self.bus = event_bus

        async def on_boot(self):
            # one plugin, one pattern, two handlers: allowed by the bus
            await self.bus.subscribe("order.placed", self.book)
            await self.bus.subscribe("order.placed", self.notify)

        async def book(self, event):
            pass

        async def notify(self, event):
            pass
    """,
}


async def test_metrics_never_repeat_a_series_when_a_plugin_subscribes_twice(boot: Boot) -> None:
    """Two handlers of one plugin on one pattern still give one queue-depth series (a
    repeated series is undefined for Prometheus, which drops one of them)."""
    system = await boot(settings=PRODUCTION, files=TWO_HANDLERS)
    response = await system.client.get(
        "/system/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    samples = [
        line.rsplit(" ", 1)[0]
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    ]
    duplicated = [s for s, n in Counter(samples).items() if n > 1]
    assert duplicated == []


TICKING = """
from microcore import Plugin


class TickPlugin(Plugin):
    def __init__(self, scheduler):
        self.scheduler = scheduler

    async def on_boot(self):
        self.scheduler.every(0.02, self.tick)
        self.scheduler.every(3600, self.fail, name="hourly")

    async def tick(self):
        pass

    async def fail(self):
        raise RuntimeError("never due in this test")
"""


async def test_metrics_count_scheduled_jobs(make_project: ProjectFactory) -> None:
    """With the scheduler tool, each job's runs, failures, skips and running state are series
    labelled by plugin and job."""
    root = make_project(
        {"domains/clock/plugins/tick_plugin.py": TICKING},
        tools=["config", "logger", "http", "scheduler", "system"],
    )
    running = await start_app(root)
    transport = httpx.ASGITransport(app=running.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            system = SimpleNamespace(client=client)

            async def ticked() -> bool:
                _, series = await scrape(system)
                tick = {"plugin": "clock.TickPlugin", "job": "tick"}
                return value(series, "microcore_job_runs_total", **tick) >= 2

            await eventually(ticked, timeout=10)
            _, series = await scrape(system)
            hourly = {"plugin": "clock.TickPlugin", "job": "hourly"}
            assert value(series, "microcore_job_runs_total", **hourly) == 0
            assert value(series, "microcore_job_failures_total", **hourly) == 0
            assert value(series, "microcore_job_skips_total", **hourly) == 0
            assert value(series, "microcore_job_running", **hourly) == 0
    finally:
        await running.stop()
