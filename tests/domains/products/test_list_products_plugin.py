"""ListProductsPlugin with mocks."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.plugins.list_products_plugin import ListProductsPlugin


async def test_list_products_returns_rows_newest_first():
    """The handler returns what the query returns, ordered by id descending."""
    plugin = ListProductsPlugin(http=MagicMock(), db=AsyncMock())
    plugin.db.query.return_value = [{"id": 2}, {"id": 1}]
    assert await plugin.execute({}, MagicMock()) == [{"id": 2}, {"id": 1}]
    assert "ORDER BY id DESC" in plugin.db.query.await_args.args[0]
