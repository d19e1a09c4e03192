"""The JavaScript sidecar of the example domain (price_format.js), against the real app."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, cast

import pytest
from httpx import AsyncClient

from microcore.testing import EventRecorder, RunningApp
from microcore.tooling import Owner

if TYPE_CHECKING:
    from tools.event_bus.event_bus_tool import EventBusTool

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")


async def test_price_format_route_formats_in_the_shop_locale(client: AsyncClient) -> None:
    """GET /prices/format answers the amount formatted for de-DE in euros (the .toml's env)."""
    response = await client.get("/prices/format", params={"amount": "1234.5"})
    assert response.status_code == 200
    assert response.json() == {
        "text": "1.234,50\u00a0€",
        "locale": "de-DE",
        "amount": 1234.5,
        "currency": "EUR",
    }


async def test_price_format_refuses_bad_input_in_the_error_shape(client: AsyncClient) -> None:
    """The route's declared fields are validated before the program sees the request: a
    missing or malformed amount is a 422 naming the field, in microcore's one error shape."""
    missing = await client.get("/prices/format")
    assert missing.status_code == 422
    assert missing.json()["error"] == {
        "code": "validation_error",
        "message": "Object missing required field `amount`",
        "path": "$.amount",
    }
    bad = await client.get("/prices/format", params={"amount": "lots"})
    assert bad.status_code == 422
    assert bad.json()["error"]["path"] == "$.amount"


async def test_price_format_answers_requests(app: RunningApp) -> None:
    """The request name price.format is answered from JavaScript, in any currency."""
    owner = Owner("tests.caller")
    owner.activate()
    bus = cast("EventBusTool", app.kernel.tool("event_bus")).bind(owner)
    reply = await bus.request("price.format", {"amount": 3, "currency": "USD"})
    assert reply == {"text": "3,00\u00a0$", "locale": "de-DE", "amount": 3, "currency": "USD"}


async def test_price_format_follows_new_products(
    client: AsyncClient, events: EventRecorder
) -> None:
    """Each product.created (from Python) makes the sidecar publish price.formatted (from JS)."""
    created = await client.post("/products", json={"name": "Pen", "price": 2.5})
    formatted = await events.wait_for("price.formatted", timeout=5.0)
    assert formatted.payload == {"id": created.json()["id"], "text": "2,50\u00a0€"}
    assert formatted.source == "products.price_format"
