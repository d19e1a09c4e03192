"""ProductSummaryPlugin: its hourly job, with mocks and in the real app."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock, MagicMock

import msgspec
from httpx import AsyncClient

from domains.products.plugins.product_summary_plugin import ProductSummary, ProductSummaryPlugin
from microcore.testing import EventRecorder, RunningApp


def _plugin(db: Any = None, bus: Any = None, scheduler: Any = None) -> ProductSummaryPlugin:
    return ProductSummaryPlugin(
        scheduler=scheduler or MagicMock(),
        db=db or AsyncMock(),
        event_bus=bus or AsyncMock(),
        logger=MagicMock(),
    )


async def test_product_summary_runs_at_the_start_of_each_hour() -> None:
    """on_boot registers publish_summary with the cron expression of minute 0, every hour."""
    scheduler = MagicMock()
    plugin = _plugin(scheduler=scheduler)
    await plugin.on_boot()
    scheduler.cron.assert_called_once_with("0 * * * *", plugin.publish_summary)


async def test_product_summary_publishes_the_catalogue_figures() -> None:
    """The job reads count and prices in one query and publishes them, the average rounded."""
    db, bus = AsyncMock(), AsyncMock()
    db.query_one.return_value = {
        "products": 3,
        "average_price": 4.333333,
        "lowest_price": 1.0,
        "highest_price": 9.0,
    }
    await _plugin(db=db, bus=bus).publish_summary()
    bus.publish.assert_awaited_once_with(
        "product.summary",
        ProductSummary(products=3, average_price=4.33, lowest_price=1.0, highest_price=9.0),
    )


async def test_product_summary_of_an_empty_catalogue_has_no_prices() -> None:
    """Without products the count is 0 and the prices are None (SQL's AVG of nothing)."""
    db, bus = AsyncMock(), AsyncMock()
    db.query_one.return_value = {
        "products": 0,
        "average_price": None,
        "lowest_price": None,
        "highest_price": None,
    }
    await _plugin(db=db, bus=bus).publish_summary()
    summary = bus.publish.await_args.args[1]
    assert summary == ProductSummary(0, None, None, None)


async def test_product_summary_in_the_app(
    app: RunningApp, client: AsyncClient, events: EventRecorder
) -> None:
    """The app lists the job with its schedule and next run; a run summarises what the API
    created, published as the plugin."""
    scheduler: Any = app.kernel.tool("scheduler")
    [job] = [j for j in scheduler.jobs() if j.name == "publish_summary"]
    assert (job.owner, job.schedule, job.runs) == (
        "products.ProductSummaryPlugin",
        "cron 0 * * * *",
        0,
    )
    assert job.next_run % 3600 == 0
    for name, price in (("Pen", 2.0), ("Lamp", 30.0), ("Cup", 4.0)):
        assert (await client.post("/products", json={"name": name, "price": price})).is_success
    plugin: Any = app.kernel.plugins["products.ProductSummaryPlugin"].instance  # the app's copy
    await plugin.publish_summary()
    event = await events.wait_for("product.summary", timeout=1.0)
    assert event.source == "products.ProductSummaryPlugin"
    assert msgspec.to_builtins(event.payload) == {  # a Struct in memory, a dict over NATS
        "products": 3,
        "average_price": 12.0,
        "lowest_price": 2.0,
        "highest_price": 30.0,
    }
