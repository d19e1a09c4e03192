"""Watching requests: the access log, observers and the request counters."""

from __future__ import annotations

from pathlib import Path

import structlog

from microcore.tooling import Owner
from tools.http._observe import Exchange
from tools.http._stats import BUCKETS, FLUSH_AT, MAX_SERIES, RequestStats

from .conftest import Serve

WATCHED = {
    "domains/shop/plugins/watched_plugin.py": """
    from microcore import Plugin

    class WatchedPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/items/{item_id:int}", "GET", self.show)

        async def show(self, data, context):
            return {"id": data["item_id"]}
    """,
}

QUIET = {"HTTP_ACCESS_LOG": "false"}


async def test_observe_access_log_line_per_request(serve: Serve) -> None:
    """Each answered request logs one http_request line with route owner and status."""
    served = await serve(WATCHED)
    with structlog.testing.capture_logs() as logs:
        await served.client.get("/items/3")
    lines = [e for e in logs if e["event"] == "http_request"]
    assert len(lines) == 1
    assert (lines[0]["method"], lines[0]["path"], lines[0]["status"]) == ("GET", "/items/3", 200)
    assert lines[0]["plugin"] == "shop.WatchedPlugin"


async def test_observe_failing_observer_is_logged_and_serving_goes_on(serve: Serve) -> None:
    """An observer that raises is logged with its name; the response is not affected."""
    served = await serve(WATCHED, settings=QUIET)

    def broken(exchange: Exchange) -> None:
        raise RuntimeError("observer bug")

    remove = served.http.observe(broken)
    with structlog.testing.capture_logs() as logs:
        response = await served.client.get("/items/1")
    remove()
    assert response.status_code == 200
    failures = [e for e in logs if e["event"] == "http_observer_failed"]
    assert len(failures) == 1
    assert failures[0]["observer"].endswith("broken")


async def test_observe_request_stats_count_routes_statuses_and_mounts(
    serve: Serve, tmp_path: Path
) -> None:
    """request_stats() counts by method and template: unmatched as None, static under its mount."""
    served = await serve(WATCHED, settings=QUIET)
    owner = Owner("tools.test")
    owner.activate()
    (tmp_path / "a.txt").write_text("a")
    served.http.bind(owner).mount_static("/files", tmp_path)
    stats = served.http.request_stats()
    assert served.http.request_stats() is stats
    for n in range(FLUSH_AT + 1):  # past FLUSH_AT: the pending list is folded in
        await served.client.get(f"/items/{n}")
    await served.client.get("/nowhere")
    await served.client.get("/files/a.txt")
    routes = stats.routes()
    item = routes[("GET", "/items/{item_id:int}")]
    assert item.count == FLUSH_AT + 1
    assert item.statuses == {200: FLUSH_AT + 1}
    assert sum(item.buckets) == item.count and item.total > 0
    assert routes[("GET", None)].statuses == {404: 1}
    assert routes[("GET", "/files/{path}")].count == 1


async def test_observe_exchange_carries_the_static_mount_owner(
    serve: Serve, tmp_path: Path
) -> None:
    """An observer sees a static file's route template and the mount's owner."""
    served = await serve({}, settings=QUIET)
    owner = Owner("tools.test")
    owner.activate()
    (tmp_path / "a.txt").write_text("a")
    served.http.bind(owner).mount_static("/files", tmp_path)
    seen: list[Exchange] = []
    served.http.observe(seen.append)
    await served.client.get("/files/a.txt")
    assert [(e.route, e.owner, e.status) for e in seen] == [("/files/{path}", "tools.test", 200)]
    assert repr(seen[0]).startswith("<Exchange GET /files/a.txt 200 ")


def test_observe_stats_bound_their_labels() -> None:
    """Unknown methods count as OTHER; past MAX_SERIES new routes count under _other."""
    stats = RequestStats()
    stats.add("BREW", "/pot", 418, 0.0)
    assert ("OTHER", "/pot") in stats.routes()
    for n in range(MAX_SERIES):
        stats.add("GET", f"/r{n}", 200, BUCKETS[-1] * 2)
    assert ("GET", "_other") in stats.routes()
    assert stats.routes()[("GET", "_other")].buckets[-1] >= 1
    assert len(stats.routes()) == MAX_SERIES + 1
