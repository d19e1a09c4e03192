"""ProductStatsPlugin with mocks: counting product.created events."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.models import Product
from domains.products.plugins.product_stats_plugin import ProductStatsPlugin
from microcore.testing import make_event


async def test_product_stats_subscribes_and_serves() -> None:
    """on_boot subscribes to product.created and registers GET /products/stats."""
    http, bus = MagicMock(), AsyncMock()
    plugin = ProductStatsPlugin(http=http, event_bus=bus, state=AsyncMock(), logger=MagicMock())
    await plugin.on_boot()
    bus.subscribe.assert_awaited_once_with("product.created", plugin.on_created)
    assert http.add_endpoint.call_args.args[:2] == ("/products/stats", "GET")


async def test_product_stats_counts_each_event() -> None:
    """Each product.created increments the counter in state."""
    state = AsyncMock()
    plugin = ProductStatsPlugin(
        http=MagicMock(), event_bus=AsyncMock(), state=state, logger=MagicMock()
    )
    state.incr.return_value = 1
    await plugin.on_created(make_event("product.created", Product(id=1, name="Pen", price=2.5)))
    state.incr.assert_awaited_once_with("products", "created")
    state.get.return_value = 1
    assert await plugin.stats({}, MagicMock()) == {"created": 1}
