"""Spans from the real tools, into the SDK's in-memory exporter: their names, kinds and parents.

One request to ``POST /orders`` inserts a row, publishes ``order.placed`` and answers; a
subscriber in another plugin reads the database, logs and asks ``price.get`` of a third. The
whole chain must be one trace: server span → statement and publish → delivery (a child of
the publish, in another task) → its statements, request and reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import Message, Receive, Scope, Send

from microcore.testing import start_app
from microcore.tooling import TRACING
from tests.conftest import ProjectFactory
from tests.support import eventually
from tools.http._routing import RouteTable
from tools.http._tracing import traced_http
from tools.system._trace import trace_id

ORDERS = """
from typing import Any

from microcore import Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.http import Context, Http


class PlaceOrderPlugin(Plugin):
    def __init__(self, http: Http, db: Db, event_bus: EventBus) -> None:
        self.http, self.db, self.bus = http, db, event_bus

    async def on_boot(self) -> None:
        self.http.add_endpoint("/orders", "POST", self.place)
        self.http.add_endpoint("/orders/{order_id:int}", "GET", self.fail)
        self.http.add_endpoint("/orders/batch", "POST", self.batch)

    async def place(self, data: dict[str, Any], context: Context) -> dict[str, Any]:
        order_id = await self.db.execute("INSERT INTO orders (sku) VALUES (?)", (data["sku"],))
        await self.bus.publish("order.placed", {"id": order_id, "secret": "s3cret"})
        return {"id": order_id}

    async def fail(self, data: dict[str, Any], context: Context) -> None:
        raise RuntimeError("boom")

    async def batch(self, data: dict[str, Any], context: Context) -> dict[str, Any]:
        async with self.db.transaction() as tx:
            await tx.execute_many("INSERT INTO orders (sku) VALUES (?)", [("a",), ("b",)])
            rows = await tx.query("SELECT id FROM orders")
        await self.db.execute_many("INSERT INTO orders (sku) VALUES (?)", [("c",)])
        return {"count": len(rows)}
"""

AUDIT = """
from microcore import Event, Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.logger import Logger


class AuditPlugin(Plugin):
    def __init__(self, db: Db, event_bus: EventBus, logger: Logger) -> None:
        self.db, self.bus, self.log = db, event_bus, logger

    async def on_boot(self) -> None:
        await self.bus.subscribe("order.placed", self.on_placed)

    async def on_placed(self, event: Event) -> None:
        await self.db.query("SELECT sku FROM orders WHERE id = ?", (event.payload["id"],))
        price = await self.bus.request("price.get", {"id": event.payload["id"]})
        self.log.info("order_audited", price=price["price"])
"""

PRICES = """
from typing import Any

from microcore import Event, Plugin
from tools.event_bus import EventBus


class PricesPlugin(Plugin):
    def __init__(self, event_bus: EventBus) -> None:
        self.bus = event_bus

    async def on_boot(self) -> None:
        await self.bus.subscribe("price.get", self.price)

    async def price(self, event: Event) -> dict[str, Any]:
        return {"price": 3}
"""

JOBS = """
from microcore import Plugin
from tools.db import Db
from tools.scheduler import Scheduler


class TickPlugin(Plugin):
    def __init__(self, scheduler: Scheduler, db: Db) -> None:
        self.scheduler, self.db = scheduler, db

    async def on_boot(self) -> None:
        self.scheduler.every(0.05, self.tick, name="tick")

    async def tick(self) -> None:
        await self.db.query("SELECT COUNT(*) AS n FROM orders")
"""


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    TRACING.use(provider)
    yield exporter
    TRACING.use(None)
    TRACING.enabled = False


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(
        {
            "domains/orders/migrations/001_orders.sql": (
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT NOT NULL);"
            ),
            "domains/orders/plugins/place_order_plugin.py": ORDERS,
            "domains/orders/plugins/audit_plugin.py": AUDIT,
            "domains/orders/plugins/prices_plugin.py": PRICES,
        }
    )


def named(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert found, f"no span {name!r} in {[s.name for s in spans]}"
    return found[-1]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_request_is_one_trace_across_the_bus(
    project: Path, exporter: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    running = await start_app(project, settings={"LOG_FORMAT": "json"})
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            answer = await client.post(
                "/orders", json={"sku": "pen"}, headers={"traceparent": parent}
            )
            assert answer.status_code == 200

            def audited() -> bool:
                return any(s.name == "price.get process" for s in exporter.get_finished_spans())

            await eventually(audited)
            spans = exporter.get_finished_spans()
    finally:
        await running.stop()

    server = named(spans, "POST /orders")
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/orders"
    assert server.attributes["http.response.status_code"] == 200
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert parent_of(server) == 0xB7AD6B7169203331  # continues the caller's trace

    insert = named(spans, "INSERT")
    assert parent_of(insert) == server.context.span_id
    assert insert.attributes is not None
    assert insert.attributes["db.query.text"] == "INSERT INTO orders (sku) VALUES (?)"
    assert "pen" not in json.dumps(dict(insert.attributes))  # never parameter values

    publish = named(spans, "order.placed publish")
    assert publish.kind is SpanKind.PRODUCER and parent_of(publish) == server.context.span_id
    process = named(spans, "order.placed process")
    assert process.kind is SpanKind.CONSUMER and parent_of(process) == publish.context.span_id
    select = named(spans, "SELECT")
    assert parent_of(select) == process.context.span_id
    request = named(spans, "price.get request")
    assert request.kind is SpanKind.CLIENT and parent_of(request) == process.context.span_id
    reply = named(spans, "price.get process")
    assert parent_of(reply) == request.context.span_id
    assert {s.context.trace_id for s in (insert, publish, process, select, request, reply)} == {
        server.context.trace_id
    }

    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    (audit_line,) = [x for x in lines if x.get("event") == "order_audited"]
    assert audit_line["trace_id"] == format(server.context.trace_id, "032x")
    assert audit_line["span_id"] == format(process.context.span_id, "016x")


async def test_a_failed_request_marks_its_span(
    project: Path, exporter: InMemorySpanExporter
) -> None:
    running = await start_app(project)
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/orders/7")).status_code == 500
            assert (await client.get("/nowhere")).status_code == 404
            assert (await client.post("/orders/batch")).json() == {"count": 2}
    finally:
        await running.stop()
    spans = exporter.get_finished_spans()
    failed = named(spans, "GET /orders/{order_id:int}")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["url.path"] == "/orders/7"
    unrouted = named(spans, "GET")  # no route template: the method alone, never the raw path
    assert unrouted.status.status_code is StatusCode.UNSET
    batch = named(spans, "POST /orders/batch")
    statements = [s for s in spans if s.name in ("INSERT", "SELECT")]
    assert len([s for s in statements if parent_of(s) == batch.context.span_id]) == 3


async def test_a_request_without_client_or_agent_is_still_a_span(
    exporter: InMemorySpanExporter,
) -> None:
    TRACING.configure({}, service="t")
    sent: list[Message] = []

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})

    async def collect(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope: Scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    await traced_http(RouteTable(), serve, scope, receive, collect)
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET" and span.attributes is not None
    assert span.attributes["http.response.status_code"] == 204
    assert "client.address" not in span.attributes and sent[0]["status"] == 204


async def test_scheduled_runs_are_spans(
    make_project: ProjectFactory, exporter: InMemorySpanExporter
) -> None:
    root = make_project(
        {
            "domains/orders/migrations/001_orders.sql": (
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT NOT NULL);"
            ),
            "domains/orders/plugins/tick_plugin.py": JOBS,
        }
    )
    running = await start_app(root)
    try:

        def ticked() -> bool:
            return any(s.name == "job tick" for s in exporter.get_finished_spans())

        await eventually(ticked)
    finally:
        await running.stop()
    job = named(exporter.get_finished_spans(), "job tick")
    assert job.attributes is not None and job.attributes["plugin"] == "orders.TickPlugin"
    statements = [s for s in exporter.get_finished_spans() if s.name == "SELECT"]
    assert any(parent_of(s) == job.context.span_id for s in statements)


async def test_event_history_carries_the_trace_id(
    project: Path, exporter: InMemorySpanExporter
) -> None:
    running = await start_app(project)
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post("/orders", json={"sku": "pen"})
            found = (await client.get("/system/events", params={"name": "order.placed"})).json()
    finally:
        await running.stop()
    server = named(exporter.get_finished_spans(), "POST /orders")
    (row,) = found["events"]
    assert row["trace_id"] == format(server.context.trace_id, "032x")


def test_only_a_well_formed_traceparent_gives_a_trace_id() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert trace_id(good) == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id("00-<script>-b7ad6b7169203331-01") is None
    assert trace_id(None) is None
