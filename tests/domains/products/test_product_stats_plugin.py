"""ProductStatsPlugin with mocks: counting product.created events."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.plugins.product_stats_plugin import ProductStatsPlugin
from microcore import Event


def make_plugin() -> ProductStatsPlugin:
    return ProductStatsPlugin(
        http=MagicMock(), event_bus=AsyncMock(), state=AsyncMock(), logger=MagicMock()
    )


async def test_product_stats_subscribes_and_serves():
    """on_boot subscribes to product.created and registers GET /products/stats."""
    plugin = make_plugin()
    await plugin.on_boot()
    plugin.bus.subscribe.assert_awaited_once_with("product.created", plugin.on_created)
    assert plugin.http.add_endpoint.call_args.args[:2] == ("/products/stats", "GET")


async def test_product_stats_counts_each_event():
    """Each product.created increments the counter in state."""
    plugin = make_plugin()
    plugin.state.incr.return_value = 1
    event = Event(
        name="product.created",
        payload={"id": 1},
        id="e1",
        correlation_id="c1",
        source="products.CreateProductPlugin",
        timestamp=0.0,
    )
    await plugin.on_created(event)
    plugin.state.incr.assert_awaited_once_with("products", "created")
    plugin.state.get.return_value = 1
    assert await plugin.stats({}, MagicMock()) == {"created": 1}
