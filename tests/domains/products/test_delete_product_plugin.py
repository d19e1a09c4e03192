"""DeleteProductPlugin with mocks: deleted (204 + event) and not found."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.models import ProductId
from domains.products.plugins.delete_product_plugin import DeleteProductPlugin


async def test_delete_product_publishes_and_returns_nothing():
    """A deleted product answers no content and publishes product.deleted."""
    plugin = DeleteProductPlugin(http=MagicMock(), db=AsyncMock(), event_bus=AsyncMock())
    plugin.db.execute.return_value = 1
    assert await plugin.execute(ProductId(product_id=3), MagicMock()) is None
    plugin.bus.publish.assert_awaited_once_with("product.deleted", {"id": 3})


async def test_delete_product_missing_is_404_without_event():
    """Deleting an unknown id is 404 and publishes nothing."""
    plugin = DeleteProductPlugin(http=MagicMock(), db=AsyncMock(), event_bus=AsyncMock())
    plugin.db.execute.return_value = 0
    context = MagicMock()
    await plugin.execute(ProductId(product_id=3), context)
    context.set_status.assert_called_once_with(404)
    plugin.bus.publish.assert_not_awaited()
