"""CreateProductPlugin, tested with plain mocks: no app, no database."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.models import NewProduct
from domains.products.plugins.create_product_plugin import CreateProductPlugin


def make_plugin() -> CreateProductPlugin:
    return CreateProductPlugin(
        http=MagicMock(), db=AsyncMock(), event_bus=AsyncMock(), logger=MagicMock()
    )


async def test_create_product_registers_post_route():
    """on_boot registers POST /products with the NewProduct model and 201."""
    plugin = make_plugin()
    await plugin.on_boot()
    args, kwargs = plugin.http.add_endpoint.call_args
    assert args == ("/products", "POST", plugin.execute)
    assert kwargs["request_model"] is NewProduct
    assert kwargs["status_code"] == 201


async def test_create_product_inserts_and_publishes():
    """execute inserts the row and publishes product.created with the new id."""
    plugin = make_plugin()
    plugin.db.execute.return_value = 7
    result = await plugin.execute(NewProduct(name="Pen", price=2.5), context=None)
    assert result == {"success": True, "id": 7}
    plugin.db.execute.assert_awaited_once_with(
        "INSERT INTO products (name, price) VALUES (?, ?)", ("Pen", 2.5)
    )
    plugin.bus.publish.assert_awaited_once_with(
        "product.created", {"id": 7, "name": "Pen", "price": 2.5}
    )
