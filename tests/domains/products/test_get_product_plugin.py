"""GetProductPlugin with mocks: found and not found."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.models import ProductId
from domains.products.plugins.get_product_plugin import GetProductPlugin


async def test_get_product_returns_the_row():
    """A stored product is returned as is."""
    plugin = GetProductPlugin(http=MagicMock(), db=AsyncMock())
    plugin.db.query_one.return_value = {"id": 1, "name": "Pen", "price": 2.5}
    assert await plugin.execute(ProductId(product_id=1), MagicMock()) == {
        "id": 1,
        "name": "Pen",
        "price": 2.5,
    }


async def test_get_product_missing_is_404():
    """An unknown id sets 404 and returns the error shape."""
    plugin = GetProductPlugin(http=MagicMock(), db=AsyncMock())
    plugin.db.query_one.return_value = None
    context = MagicMock()
    result = await plugin.execute(ProductId(product_id=9), context)
    context.set_status.assert_called_once_with(404)
    assert result["error"]["code"] == "not_found"
