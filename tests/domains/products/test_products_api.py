"""The products API against the real app (microcore.testing's client and events fixtures)."""

from __future__ import annotations

from httpx import AsyncClient

from microcore.testing import EventRecorder


async def test_create_publishes_and_is_counted(client: AsyncClient, events: EventRecorder) -> None:
    """POST /products answers 201, publishes product.created, and the stats plugin counts it."""
    response = await client.post("/products", json={"name": "Pen", "price": 2.5})
    assert response.status_code == 201
    event = await events.wait_for("product.created", timeout=1.0)
    assert event.payload == {"id": response.json()["id"], "name": "Pen", "price": 2.5}
    assert event.source == "products.CreateProductPlugin"
    listed = await client.get("/products")
    assert listed.json() == [{"id": event.payload["id"], "name": "Pen", "price": 2.5}]


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
    assert deleted.payload == {"id": created["id"]}
    assert (await client.get(f"/products/{created['id']}")).status_code == 404
