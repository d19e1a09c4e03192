"""GetProductPlugin with mocks: found and not found."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

import pytest

from domains.products.models import Product, ProductId
from domains.products.plugins.get_product_plugin import GetProductPlugin
from tools.http import NotFound


async def test_get_product_returns_the_row() -> None:
    """A stored product is returned as a Product."""
    db = AsyncMock()
    plugin = GetProductPlugin(http=MagicMock(), db=db)
    db.query_one.return_value = {"id": 1, "name": "Pen", "price": 2.5}
    found = await plugin.execute(ProductId(product_id=1), MagicMock())
    assert found == Product(id=1, name="Pen", price=2.5)


async def test_get_product_missing_is_404() -> None:
    """An unknown id raises NotFound (answered 404 in the error shape)."""
    db = AsyncMock()
    plugin = GetProductPlugin(http=MagicMock(), db=db)
    db.query_one.return_value = None
    with pytest.raises(NotFound, match="product 9 not found"):
        await plugin.execute(ProductId(product_id=9), MagicMock())
