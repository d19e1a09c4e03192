"""ListProductsPlugin with mocks."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.models import Product
from domains.products.plugins.list_products_plugin import ListProductsPlugin


async def test_list_products_returns_rows_newest_first() -> None:
    """The handler returns the query's rows as Products, ordered by id descending."""
    db = AsyncMock()
    plugin = ListProductsPlugin(http=MagicMock(), db=db)
    db.query.return_value = [
        {"id": 2, "name": "B", "price": 1.0},
        {"id": 1, "name": "A", "price": 2},
    ]
    assert await plugin.execute({}, MagicMock()) == [Product(2, "B", 1.0), Product(1, "A", 2.0)]
    assert "ORDER BY id DESC" in db.query.await_args.args[0]
