"""Black box: two replicas export OTLP/HTTP to a small local receiver, one trace across NATS.

Replica A serves ``POST /orders`` (a statement, then a publish); replica B, a separate
``uvicorn`` process sharing only the NATS server, handles ``order.placed`` and queries its
database. Both export with the SDK's batching OTLP/HTTP exporter, configured by nothing but
``OTEL_EXPORTER_OTLP_ENDPOINT``; the receiver decodes what arrives. The handler's spans on B
must continue the request's trace from A, carried by the NATS message.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import ProjectFactory
from tests.support import eventually, free_port, serve
from tests.tools.conftest import require_service
from tests.tools.test_tracing_spans import AUDIT, ORDERS, PRICES

NATS_URL = os.environ.get("MICROCORE_TEST_NATS", "nats://127.0.0.1:4222")
MIGRATION = "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT NOT NULL);"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


class Receiver:
    """An OTLP/HTTP traces endpoint (protobuf) that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.take(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service,
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                        )
                    )

    def find(self, service: str, name: str) -> ReceivedSpan | None:
        found = [s for s in self.spans if s.service == service and s.name == name]
        return found[-1] if found else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def stream() -> Iterator[str]:
    require_service("NATS", NATS_URL, 4222)
    name = f"otlp_{uuid.uuid4().hex[:10]}"
    yield name

    async def delete() -> None:
        import nats

        client = await nats.connect(NATS_URL)
        try:
            await client.jetstream().delete_stream(name)
        finally:
            await client.close()

    anyio.run(delete)


def test_one_trace_crosses_nats_between_replicas(
    make_project: ProjectFactory, receiver: Receiver, stream: str, tmp_path: Path
) -> None:
    app = "from microcore import create_app\n\napp = create_app()\n"
    a = make_project(
        {
            "app.py": app,
            "domains/orders/migrations/001_orders.sql": MIGRATION,
            "domains/orders/plugins/place_order_plugin.py": ORDERS,
        }
    )
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "domains/orders/plugins/place_order_plugin.py").unlink()
    (b / "domains/orders/plugins/audit_plugin.py").write_text(AUDIT)
    (b / "domains/orders/plugins/prices_plugin.py").write_text(PRICES)
    shared = {
        "MICROCORE_ENV": "development",
        "EVENT_BUS_URL": NATS_URL,
        "EVENT_BUS_STREAM": stream,
        "DATABASE_URL": "sqlite:///orders.db",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with (
        serve(a, {**shared, "OTEL_SERVICE_NAME": "replica-a"}) as url_a,
        serve(b, {**shared, "OTEL_SERVICE_NAME": "replica-b"}),
    ):
        answer = httpx.post(f"{url_a}/orders", json={"sku": "pen"}, timeout=10)
        assert answer.status_code == 200

        def arrived() -> bool:
            return receiver.find("replica-b", "SELECT") is not None and any(
                s.name == "price.get process" for s in receiver.spans
            )

        anyio.run(lambda: eventually(arrived, timeout=20))

    server = receiver.find("replica-a", "POST /orders")
    publish = receiver.find("replica-a", "order.placed publish")
    process = receiver.find("replica-b", "order.placed process")
    select = receiver.find("replica-b", "SELECT")
    assert server and publish and process and select
    assert publish.parent_id == server.span_id
    assert process.parent_id == publish.span_id  # the NATS hop keeps the parent
    assert select.parent_id == process.span_id
    assert {s.trace_id for s in (server, publish, process, select)} == {server.trace_id}
