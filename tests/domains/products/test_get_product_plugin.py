"""GetProductPlugin with mocks: found and not found, over HTTP and as `product.get` responder."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

import pytest

from domains.products.models import Product, ProductId
from domains.products.plugins.get_product_plugin import GetProductPlugin
from microcore.testing import make_event
from tools.http import NotFound


def _plugin(row: dict[str, object] | None) -> GetProductPlugin:
    db = AsyncMock()
    db.query_one.return_value = row
    return GetProductPlugin(http=MagicMock(), db=db, event_bus=AsyncMock())


async def test_get_product_registers_route_and_responder() -> None:
    """on_boot serves GET /products/{product_id:int} and answers `product.get`."""
    plugin = _plugin(None)
    await plugin.on_boot()
    plugin.bus.respond.assert_awaited_once_with("product.get", plugin.on_get)  # type: ignore[attr-defined]


async def test_get_product_returns_the_row() -> None:
    """A stored product is returned as a Product."""
    plugin = _plugin({"id": 1, "name": "Pen", "price": 2.5})
    found = await plugin.execute(ProductId(product_id=1), MagicMock())
    assert found == Product(id=1, name="Pen", price=2.5)


async def test_get_product_missing_is_404() -> None:
    """An unknown id raises NotFound (answered 404 in the error shape)."""
    plugin = _plugin(None)
    with pytest.raises(NotFound, match="product 9 not found"):
        await plugin.execute(ProductId(product_id=9), MagicMock())


async def test_get_product_responder_replies_product_or_none() -> None:
    """`product.get` replies the Product, or None for an unknown id (a reply, not silence)."""
    assert await _plugin({"id": 1, "name": "Pen", "price": 2.5}).on_get(
        make_event("product.get", ProductId(product_id=1))
    ) == Product(id=1, name="Pen", price=2.5)
    assert await _plugin(None).on_get(make_event("product.get", ProductId(product_id=9))) is None
