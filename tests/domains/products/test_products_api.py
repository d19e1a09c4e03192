"""The products API against the real app (microcore.testing's client and events fixtures)."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest
from httpx import AsyncClient

from domains.products.models import Product, ProductId
from microcore.testing import EventRecorder, TestClient
from tools.event_bus import EventPayloadError, NoResponder, RequestTimeout


async def test_create_publishes_and_is_counted(client: AsyncClient, events: EventRecorder) -> None:
    """POST /products answers 201, publishes product.created with a Product, and the stats
    plugin counts it."""
    response = await client.post("/products", json={"name": "Pen", "price": 2.5})
    assert response.status_code == 201
    event = await events.wait_for("product.created", timeout=1.0)
    assert msgspec.to_builtins(event.payload) == {"name": "Pen", "price": 2.5, **response.json()}
    assert event.source == "products.CreateProductPlugin"
    listed = await client.get("/products")
    assert listed.json() == [{"id": event.payload.id, "name": "Pen", "price": 2.5}]


async def test_bad_input_changes_nothing(client: AsyncClient, events: EventRecorder) -> None:
    """Invalid bodies are refused with the field path and publish nothing."""
    response = await client.post("/products", json={"name": "Pen", "price": -1})
    assert response.status_code == 422
    assert response.json()["error"]["path"] == "$.price"
    assert (await client.post("/products", content=b"{not json")).status_code == 400
    assert (await client.get("/products")).json() == []
    assert events.published == []


async def test_delete_then_get_is_404(client: AsyncClient, events: EventRecorder) -> None:
    """A deleted product is gone and product.deleted is published."""
    created = (await client.post("/products", json={"name": "Cup", "price": 4})).json()
    assert (await client.delete(f"/products/{created['id']}")).status_code == 204
    deleted = await events.wait_for("product.deleted", timeout=1.0)
    assert msgspec.to_builtins(deleted.payload) == {"product_id": created["id"]}
    assert (await client.get(f"/products/{created['id']}")).status_code == 404


async def test_product_get_replies_product_or_none(
    client: AsyncClient, events: EventRecorder
) -> None:
    """`product.get` answers the Product, and None (at once, not a timeout) for an unknown
    id; the request is listed in ``events.requests``, not ``events.published``."""
    created = (await client.post("/products", json={"name": "Cup", "price": 4})).json()
    bus = events.bus
    found = await bus.request("product.get", ProductId(product_id=created["id"]), reply=Product)
    assert found == Product(id=created["id"], name="Cup", price=4.0)
    with anyio.fail_after(1):
        assert await bus.request("product.get", {"product_id": 999}, timeout=30) is None
    assert [e.name for e in events.requests] == ["product.get", "product.get"]
    assert events.names() == ["product.created"]


async def test_product_get_payload_breaking_its_contract_fails_at_the_requester(
    events: EventRecorder,
) -> None:
    """In tests (development), a payload the responder's `Event[ProductId]` refuses is an
    error at the requester, naming the field."""
    with pytest.raises(EventPayloadError, match=r"ProductId.*\$\.product_id"):
        await events.bus.request("product.get", {"product_id": "seven"})


async def test_stubbed_and_silenced_responders(events: EventRecorder) -> None:
    """A test replaces the responder (stub), removes it (503 NoResponder) or slows it
    (504 RequestTimeout) without touching the kernel."""
    bus = events.bus
    await events.stub_responder("product.get", Product(id=1, name="Stub", price=1.0))
    assert await bus.request("product.get", ProductId(product_id=1), reply=Product) == Product(
        id=1, name="Stub", price=1.0
    )
    events.silence("stock.count")
    with pytest.raises(NoResponder):
        await bus.request("stock.count", {})


async def test_slow_responder_times_out(events: EventRecorder) -> None:
    """``stub_responder(..., delay=)`` past the request's timeout is a RequestTimeout."""

    async def reply(event: Any) -> dict[str, int]:
        return {"id": event.payload["product_id"]}

    await events.stub_responder("product.get", reply, delay=5.0)
    with pytest.raises(RequestTimeout):
        await events.bus.request("product.get", {"product_id": 1}, timeout=0.05)


async def test_silenced_responder_is_absent(events: EventRecorder) -> None:
    """``events.silence`` makes the app's responder absent for this test: NoResponder."""
    events.silence("product.get")
    with pytest.raises(NoResponder):
        await events.bus.request("product.get", {"product_id": 1})


async def test_live_feed_streams_created_and_deleted(client: TestClient) -> None:
    """GET /products/live sends one server-sent event per product created or deleted."""
    async with client.sse("/products/live") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        created = (await client.post("/products", json={"name": "Pen", "price": 2.5})).json()
        message = await stream.next(timeout=2.0)
        assert message.event == "product.created"
        assert message.json() == created
        await client.delete(f"/products/{created['id']}")
        message = await stream.next(timeout=2.0)
        assert (message.event, message.json()) == ("product.deleted", {"product_id": created["id"]})
