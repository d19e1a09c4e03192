"""The JSON endpoints: health, status, routes, events with their causes, graph, dashboard files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from microcore.testing import start_app
from tests.tools.system.conftest import BROKEN, Boot


async def test_health_names_every_failed_plugin_with_503(boot: Boot) -> None:
    """A failed plugin turns /system/health into a 503 that names it."""
    system = await boot(files=BROKEN)
    response = await system.client.get("/system/health")
    assert response.status_code == 503
    assert response.json() == {
        "success": False,
        "error": {"code": "not_ready", "message": "not ready: plugin shop.BrokenPlugin"},
        "status": "failed",
        "tools": [],
        "plugins": ["shop.BrokenPlugin"],
        "services": {},
    }


DOWN_TOOL = """
from microcore import Tool


class DownTool(Tool):
    name = "down"

    def __init__(self):
        self.problem = None
        self.probes = 0

    async def probe(self):
        self.probes += 1
        if self.problem == "hang":
            import anyio
            await anyio.sleep_forever()
        if self.problem == "raise":
            raise RuntimeError("probe broke")
        return self.problem
"""


async def test_health_names_a_backing_service_that_does_not_answer(boot: Boot) -> None:
    """A tool whose service does not answer makes /system/health 503 naming it, and 200 once
    it answers again; /system/live stays 200 throughout; probes are cached briefly."""
    system = await boot(
        files={"tools/down/down_tool.py": DOWN_TOOL},
        settings={"SYSTEM_PROBE_CACHE": "0", "SYSTEM_PROBE_TIMEOUT": "0.05"},
    )
    down: Any = system.running.kernel.tool("down")
    assert (await system.client.get("/system/health")).json()["services"] == {}
    down.problem = "cannot reach the thing at thing:1"
    response = await system.client.get("/system/health")
    assert response.status_code == 503
    body = response.json()
    assert body["services"] == {"down": "cannot reach the thing at thing:1"}
    assert body["error"] == {
        "code": "not_ready",
        "message": "not ready: down (cannot reach the thing at thing:1)",
    }
    assert (await system.client.get("/system/live")).json() == {"status": "ok"}
    down.problem = "hang"
    assert (await system.client.get("/system/health")).json()["services"] == {
        "down": "no answer within 0.05 s"
    }
    down.problem = "raise"
    assert (await system.client.get("/system/health")).json()["services"] == {
        "down": "probe failed: RuntimeError: probe broke"
    }
    down.problem = None
    assert (await system.client.get("/system/health")).status_code == 200


async def test_health_probes_at_most_once_per_cache_period(boot: Boot) -> None:
    """Many health checks within SYSTEM_PROBE_CACHE seconds share one round of probes."""
    system = await boot(
        files={"tools/down/down_tool.py": DOWN_TOOL}, settings={"SYSTEM_PROBE_CACHE": "60"}
    )
    down: Any = system.running.kernel.tool("down")
    for _ in range(5):
        assert (await system.client.get("/system/health")).status_code == 200
    assert down.probes == 1


async def test_status_shows_plugins_with_error_file_and_line(boot: Boot) -> None:
    """/system/status lists each plugin's status, routes and subscriptions, and where it failed."""
    system = await boot(files=BROKEN)
    body = (await system.client.get("/system/status")).json()
    assert body["tools"]["system"]["status"] == "ok"
    order = body["plugins"]["shop.OrderPlugin"]
    assert order["status"] == "ok"
    assert "POST /orders" in order["routes"]
    assert body["plugins"]["shop.AuditPlugin"]["subscriptions"] == ["invoice.*", "refund.issued"]
    broken = body["plugins"]["shop.BrokenPlugin"]
    assert broken["status"] == "failed"
    assert broken["error"]["file"] == "domains/shop/plugins/broken_plugin.py"
    assert broken["error"]["line"] == 6
    assert "broken on purpose" in broken["error"]["message"]
    assert body["booted_at"] is not None


async def test_routes_lists_templates_owners_and_request_counts(boot: Boot) -> None:
    """/system/routes lists every serving route by template with its owner and requests so far."""
    system = await boot()
    await system.client.get("/orders/1")
    await system.client.get("/orders/2")
    await system.client.get("/boom")
    routes = (await system.client.get("/system/routes")).json()["routes"]
    by_label = {r["label"]: r for r in routes}
    show = by_label["GET /orders/{order_id:int}"]
    assert show["owner"] == "shop.OrderPlugin"
    assert show["requests"] == 2
    assert show["server_errors"] == 0
    assert by_label["GET /boom"]["server_errors"] == 1
    assert by_label["GET /system/health"]["owner"] == "tools.system"
    assert by_label["GET /system/events"]["request_model"] == "EventQuery"


async def test_events_show_the_request_and_the_event_that_caused_each(boot: Boot) -> None:
    """A request's event names the request id as origin; a handler's event names its parent."""
    system = await boot()
    placed = await system.client.post("/orders", json={"item": "pen"})
    request_id = placed.headers["x-request-id"]
    await system.published("invoice.created")
    body = (await system.client.get("/system/events")).json()
    by_name = {e["name"]: e for e in body["events"]}
    order = by_name["order.placed"]
    assert order["correlation_id"] == request_id
    assert order["caused_by"] == {"kind": "origin", "id": request_id}
    invoice = by_name["invoice.created"]
    assert invoice["caused_by"] == {"kind": "event", "id": order["id"], "name": "order.placed"}
    assert invoice["chain"] == [order["id"], invoice["id"]]
    assert invoice["payload"] == {"item": "pen"}


async def test_events_traces_nest_events_under_their_request(boot: Boot) -> None:
    """Each correlation is one trace: its events as a tree under the request id."""
    system = await boot()
    placed = await system.client.post("/orders", json={"item": "pen"})
    await system.published("invoice.created")
    request_id = placed.headers["x-request-id"]
    body = await system.client.get("/system/events", params={"correlation_id": request_id})
    traces = body.json()["traces"]
    assert len(traces) == 1
    trace = traces[0]
    assert trace["correlation_id"] == request_id
    assert trace["request"] is None  # details only while a live feed watches requests
    names = [(node["name"], [c["name"] for c in node["children"]]) for node in trace["events"]]
    assert names == [("price.quote", []), ("order.placed", ["invoice.created"])]


async def test_events_filters_by_name_pattern_source_and_event_id(boot: Boot) -> None:
    """?name= takes patterns, ?source= a publisher, ?event_id= a family, ?limit= the last N."""
    system = await boot()
    await system.client.post("/orders", json={"item": "pen"})
    await system.client.post("/orders", json={"item": "ink"})
    await system.settled()
    get = system.client.get

    def names(response: httpx.Response) -> list[str]:
        return [e["name"] for e in response.json()["events"]]

    assert names(await get("/system/events", params={"name": "invoice.*"})) == [
        "invoice.created",
        "invoice.created",
    ]
    by_source = await get("/system/events", params={"source": "shop.BillingPlugin"})
    assert names(by_source) == ["invoice.created", "invoice.created"]
    last = await get("/system/events", params={"limit": 1})
    assert names(last) == ["invoice.created"]
    assert last.json()["events"][0]["payload"] == {"item": "ink"}
    order_id = next(e["id"] for e in (await get("/system/events")).json()["events"]
                    if e["name"] == "order.placed")  # fmt: skip
    family = await get("/system/events", params={"event_id": order_id})
    assert names(family) == ["order.placed", "invoice.created"]
    assert (await get("/system/events", params={"limit": 0})).status_code == 422


async def test_events_mark_dead_letters_as_failed(boot: Boot) -> None:
    """A handler that fails every attempt leaves a _dlq.<name> event marked failed."""
    system = await boot()
    await system.client.post("/orders", json={"item": "bad"})
    await system.published("_dlq.invoice.created")
    events = (await system.client.get("/system/events", params={"name": "_dlq.>"})).json()
    (dead,) = events["events"]
    assert dead["failed"] is True
    assert dead["payload"]["subscriber"] == "shop.AuditPlugin"
    assert dead["caused_by"]["name"] == "invoice.created"


async def test_events_payloads_hidden_by_setting(boot: Boot) -> None:
    """SYSTEM_FEED_PAYLOADS=0 keeps payloads out of /system/events."""
    system = await boot(settings={"SYSTEM_FEED_PAYLOADS": "0"})
    await system.client.post("/orders", json={"item": "secret"})
    await system.published("invoice.created")
    body = await system.client.get("/system/events")
    assert "secret" not in body.text
    assert all(e["payload"] is None and e["payload_hidden"] for e in body.json()["events"])


async def test_graph_lists_publishers_subscribers_requesters_and_responders(boot: Boot) -> None:
    """/system/graph merges the source scan with what ran: senders and receivers per name."""
    system = await boot()
    graph = (await system.client.get("/system/graph")).json()
    events = {e["name"]: e for e in graph["events"]}
    assert events["order.placed"]["publishers"] == ["shop.OrderPlugin"]
    assert events["order.placed"]["subscribers"] == [
        {"plugin": "shop.BillingPlugin", "pattern": "order.placed"}
    ]
    assert events["order.placed"]["static"] is True
    assert events["order.placed"]["seen"] is False  # known from source before it ever ran
    assert events["invoice.created"]["subscribers"] == [
        {"plugin": "shop.AuditPlugin", "pattern": "invoice.*"}
    ]
    assert events["refund.issued"]["publishers"] == []  # subscribed, nothing sends it
    (quote,) = graph["requests"]
    assert quote["name"] == "price.quote"
    assert quote["requesters"] == ["shop.OrderPlugin"]
    assert quote["responders"] == ["shop.PricePlugin"]
    assert {n["id"] for n in graph["nodes"]} >= {"shop.OrderPlugin", "shop.PricePlugin"}


async def test_graph_counts_what_was_published_and_shows_dead_letters(boot: Boot) -> None:
    """After traffic the graph counts events by name and shows _dlq names as failed."""
    system = await boot()
    await system.client.post("/orders", json={"item": "bad"})
    await system.published("_dlq.invoice.created")
    graph = (await system.client.get("/system/graph")).json()
    events = {e["name"]: e for e in graph["events"]}
    assert events["order.placed"]["seen"] is True
    assert events["order.placed"]["published"] == 1
    assert events["_dlq.invoice.created"]["failed"] is True
    assert events["_dlq.invoice.created"]["publishers"] == ["event_bus"]
    assert graph["requests"][0]["published"] == 1
    subs = {(s["subscriber"], s["pattern"]): s for s in graph["subscriptions"]}
    assert subs[("shop.AuditPlugin", "invoice.*")]["failed"] == 1


async def test_dashboard_page_and_assets_are_local(boot: Boot) -> None:
    """The page loads its script and style from /system/dashboard/ and nothing from elsewhere."""
    system = await boot()
    page = (await system.client.get("/system/dashboard")).text
    linked = [u for u in re.findall(r'(?:src|href)="([^"]+)"', page) if u != "data:,"]
    assert sorted(linked) == ["/system/dashboard/dashboard.css", "/system/dashboard/dashboard.js"]
    for path in linked:
        asset = await system.client.get(path)
        assert asset.status_code == 200
        assert "cache-control" in asset.headers
        urls = re.findall(r"https?://[^\s\"')]+", asset.text)
        assert urls in ([], ["http://www.w3.org/2000/svg"]), urls
    script = await system.client.get("/system/dashboard/dashboard.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"


async def test_dashboard_unknown_asset_is_404(boot: Boot) -> None:
    """An asset name the dashboard does not ship is a 404 naming the ones it does."""
    system = await boot()
    response = await system.client.get("/system/dashboard/evil.js")
    assert response.status_code == 404
    assert "dashboard.js" in response.json()["error"]["message"]


async def test_system_without_an_event_bus_serves_empty_event_views(
    make_project: Callable[..., Path],
) -> None:
    """A project with no event bus still has health, events, graph and metrics (no events)."""
    files = {
        "domains/shop/__init__.py": "",
        "domains/shop/plugins/ping_plugin.py": """
        from microcore import Plugin

        class PingPlugin(Plugin):
            def __init__(self, http):
                self.http = http

            async def on_boot(self):
                self.http.add_endpoint("/ping", "GET", self.ping)

            async def ping(self, data, context):
                return {"pong": True}
        """,
    }
    root = make_project(files, tools=["config", "logger", "http", "system"])
    running = await start_app(root, settings={"LOG_LEVEL": "WARNING"})
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/system/health")).status_code == 200
            events = (await client.get("/system/events")).json()
            assert events == {"events": [], "traces": [], "history": 0}
            graph = (await client.get("/system/graph")).json()
            assert graph["events"] == graph["requests"] == graph["subscriptions"] == []
            assert graph["nodes"] == [{"id": "shop.PingPlugin", "kind": "plugin", "status": "ok"}]
            metrics = (await client.get("/system/metrics")).text
            assert "microcore_events_published_total" in metrics
    finally:
        await running.stop()
