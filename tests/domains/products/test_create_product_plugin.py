"""CreateProductPlugin, tested with plain mocks: no app, no database."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

from domains.products.models import NewProduct, Product
from domains.products.plugins.create_product_plugin import CreateProductPlugin


async def test_create_product_registers_post_route() -> None:
    """on_boot registers POST /products answering 201; the models come from annotations."""
    http = MagicMock()
    plugin = CreateProductPlugin(
        http=http, db=AsyncMock(), event_bus=AsyncMock(), logger=MagicMock()
    )
    await plugin.on_boot()
    args, kwargs = http.add_endpoint.call_args
    assert args == ("/products", "POST", plugin.execute)
    assert kwargs["status_code"] == 201


async def test_create_product_inserts_and_publishes(db: AsyncMock, tx: AsyncMock) -> None:
    """execute inserts the row and publishes product.created with the new id in one
    transaction (the event commits with the row), and returns the product."""
    bus = AsyncMock()
    plugin = CreateProductPlugin(http=MagicMock(), db=db, event_bus=bus, logger=MagicMock())
    tx.execute.return_value = 7
    result = await plugin.execute(NewProduct(name="Pen", price=2.5), context=MagicMock())
    assert result == Product(id=7, name="Pen", price=2.5)
    tx.execute.assert_awaited_once_with(
        "INSERT INTO products (name, price) VALUES (?, ?)", ("Pen", 2.5)
    )
    bus.publish.assert_awaited_once_with(
        "product.created", {"id": 7, "name": "Pen", "price": 2.5}, transaction=tx
    )
