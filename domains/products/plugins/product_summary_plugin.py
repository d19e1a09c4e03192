"""Every hour, publish ``product.summary``: the catalogue's size and price range.

Reporting, digests and dashboards subscribe to one event an hour instead of each
polling the products table. The job belongs to this plugin (``scheduler.cron`` in
``on_boot``): it stops when the plugin unloads, shows in ``/system/status`` with its
last and next run, and with ``STATE_URL=redis://`` runs on one replica per hour,
not on every replica.
"""

from __future__ import annotations

import msgspec

from microcore import Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.logger import Logger
from tools.scheduler import Scheduler

HOURLY = "0 * * * *"  # minute 0 of every hour, UTC


class ProductSummary(msgspec.Struct, frozen=True):
    """The payload of ``product.summary``; prices are ``None`` while there is no product."""

    products: int
    average_price: float | None
    lowest_price: float | None
    highest_price: float | None


class ProductSummaryPlugin(Plugin):
    def __init__(self, scheduler: Scheduler, db: Db, event_bus: EventBus, logger: Logger) -> None:
        self.scheduler, self.db, self.bus, self.logger = scheduler, db, event_bus, logger

    async def on_boot(self) -> None:
        self.scheduler.cron(HOURLY, self.publish_summary)

    async def publish_summary(self) -> None:
        """Count the products and their prices, and publish ``product.summary``."""
        row = await self.db.query_one(
            "SELECT COUNT(*) AS products, AVG(price) AS average_price, "
            "MIN(price) AS lowest_price, MAX(price) AS highest_price FROM products"
        )
        assert row is not None  # an aggregate without GROUP BY always answers one row
        average = row["average_price"]
        summary = ProductSummary(
            products=int(row["products"]),
            average_price=None if average is None else round(float(average), 2),
            lowest_price=row["lowest_price"],
            highest_price=row["highest_price"],
        )
        await self.bus.publish("product.summary", summary)
        self.logger.info("product summary published", products=summary.products)
