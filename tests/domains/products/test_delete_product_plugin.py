"""DeleteProductPlugin with mocks: deleted (204 + event) and not found."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

import pytest

from domains.products.models import ProductId
from domains.products.plugins.delete_product_plugin import DeleteProductPlugin
from tools.http import NotFound


async def test_delete_product_publishes_and_returns_nothing(db: AsyncMock, tx: AsyncMock) -> None:
    """A deleted product answers no content and publishes product.deleted with the delete."""
    bus = AsyncMock()
    plugin = DeleteProductPlugin(http=MagicMock(), db=db, event_bus=bus)
    tx.execute.return_value = 1
    await plugin.execute(ProductId(product_id=3), MagicMock())
    bus.publish.assert_awaited_once_with("product.deleted", {"id": 3}, transaction=tx)


async def test_delete_product_missing_is_404_without_event(db: AsyncMock, tx: AsyncMock) -> None:
    """Deleting an unknown id raises NotFound and publishes nothing."""
    bus = AsyncMock()
    plugin = DeleteProductPlugin(http=MagicMock(), db=db, event_bus=bus)
    tx.execute.return_value = 0
    with pytest.raises(NotFound):
        await plugin.execute(ProductId(product_id=3), MagicMock())
    bus.publish.assert_not_awaited()
