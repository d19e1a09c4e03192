"""The system tool's parts on their own: payload views, causal families, the static scan,
dead-letter counters and the feed with nobody watching."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import cast

import msgspec

from microcore import Event
from microcore.tooling import PluginRecord, SystemStatus
from tools.http import Context
from tools.http._stats import RequestStats
from tools.http.http_tool import Exchange
from tools.system._feed import Feed
from tools.system._graph import StaticScan
from tools.system._metrics import MAX_SERIES, OTHER, Metrics
from tools.system._trace import MAX_PAYLOAD, payload_view, select, traces

EMPTY_STATUS = SystemStatus(
    tools={},
    plugins={},
    booted_at=None,
    boot_ms=None,
    reloaded_at=None,
    reload_ms=None,
    reload_errors={},
)


def event(name: str, id: str, parent: str | None = None, payload: object = None) -> Event:
    return Event(
        name=name,
        payload=payload if payload is not None else {},
        id=id,
        correlation_id="c1",
        source="shop.OrderPlugin",
        timestamp=0.0,
        parent_id=parent,
    )


def test_payload_view_hides_cuts_and_names_what_is_not_json() -> None:
    """Hidden is None; JSON comes pre-encoded; a long payload is cut; a non-JSON one is named."""
    assert payload_view({"a": 1}, show=False) is None
    assert payload_view({"a": 1}, show=True) == msgspec.Raw(b'{"a":1}')
    long = payload_view("x" * (MAX_PAYLOAD * 2), show=True)
    assert isinstance(long, str)
    assert long.endswith(f"... <cut: {MAX_PAYLOAD * 2 + 2} bytes>")
    assert payload_view(object(), show=True).startswith("<payload is not JSON: TypeError")


def test_select_event_id_finds_ancestors_and_nothing_when_unknown() -> None:
    """``?event_id=`` keeps the event's ancestors; an id not (or no longer) in history
    selects no events."""
    history = [event("order.placed", "e1"), event("invoice.created", "e2", parent="e1")]
    assert select(history, event_id="e2") == history
    assert select(history, event_id="gone") == []


def test_traces_chain_stops_at_an_ancestor_outside_history() -> None:
    """An event whose parent left the history ring chains back to that parent's id and stops;
    its cause names the parent without a name."""
    orphan = event("invoice.created", "e2", parent="e1")
    rows, trees = traces([orphan], [orphan], {}, payloads=True)
    (row,) = rows
    assert row["chain"] == ["e1", "e2"]
    assert row["caused_by"] == {"kind": "event", "id": "e1", "name": None}
    assert [node["id"] for node in trees[0]["events"]] == ["e2"]


def plugin_file(root: Path, body: str) -> Path:
    path = root / "domains/shop/plugins/order_plugin.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


ORDER = """
    from microcore import Plugin

    class OrderPlugin(Plugin):
        async def place(self):
            await self.bus.publish("order.placed", {})
            await self.bus.request("price.quote", {})
"""


def test_static_scan_reads_serving_plugins_once_per_version(tmp_path: Path) -> None:
    """Literal publish/request names come from serving plugins only, and a plugin's file is
    read again only when it reloads (a new ``loaded_at``)."""
    path = plugin_file(tmp_path, ORDER)
    record = PluginRecord("shop.OrderPlugin", "shop", path, None)
    record.loaded_at = 1.0
    failed = PluginRecord("shop.BrokenPlugin", "shop", tmp_path / "missing.py", None)
    failed.status = "failed"
    scan = StaticScan(tmp_path)
    plugins = {"shop.OrderPlugin": record, "shop.BrokenPlugin": failed}
    published = {"order.placed": {"shop.OrderPlugin"}}
    requested = {"price.quote": {"shop.OrderPlugin"}}
    assert scan.calls(plugins) == (published, requested)
    plugin_file(tmp_path, ORDER.replace("order.placed", "order.changed"))
    assert scan.calls(plugins) == (published, requested)  # same version: not read again
    record.loaded_at = 2.0
    assert scan.calls(plugins)[0] == {"order.changed": {"shop.OrderPlugin"}}


def test_metrics_dead_letter_series_stay_bounded() -> None:
    """Past MAX_SERIES (name, subscriber) pairs new dead letters count under '_other', and the
    sources remembered per dead-letter name stop growing."""
    metrics = Metrics()
    for n in range(MAX_SERIES + 5):
        metrics.event(event(f"_dlq.made.up{n}", str(n), payload={"subscriber": "shop.A"}))
    metrics.event(event("_dlq.odd", "x", payload=["not", "a", "dict"]))
    text = metrics.render(
        requests=RequestStats(),
        status=EMPTY_STATUS,
        subscriptions=[],
        outcomes=[],
        feed={"clients": 0, "dropped": 0},
    )
    assert f'microcore_events_dead_lettered_total{{name="{OTHER}",subscriber="{OTHER}"}} 6' in text
    assert len(metrics.dead_letter_sources) == MAX_SERIES


class Sse:
    """Enough of an http Context for a feed stream: it wraps messages."""

    def event(self, data: object, *, event: str | None = None, retry: int | None = None) -> object:
        return (event, data)


async def test_feed_stream_without_a_watch_callback() -> None:
    """A feed built without ``on_watch`` streams to its clients all the same."""
    feed = Feed(buffer=4)
    stream = feed.stream(cast(Context, Sse()))
    assert await anext(stream) == ("ready", {"buffer": 4, "payloads": True, "trace_url": None})
    assert feed.stats()["clients"] == 1
    feed.push("reload", {"n": 1})
    assert await anext(stream) == ("reload", b'{"n":1}')
    await stream.aclose()
    assert feed.stats()["clients"] == 0


def test_feed_with_nobody_watching_skips_the_work() -> None:
    """Without clients, pushes of requests and events are dropped at once (nothing encoded)."""
    feed = Feed()
    feed.request(Exchange("GET", "/orders/1", "/orders/{id}", 200, 0.001, "r1", "shop.A"))
    feed.event(event("order.placed", "e1"))
    assert feed.stats() == {"clients": 0, "dropped": 0}
