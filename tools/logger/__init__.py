"""What plugins receive from the ``logger`` tool.

::

    from tools.logger import Logger

    class ShipOrderPlugin(Plugin):
        def __init__(self, logger: Logger):
            self.logger = logger

        async def on_shipped(self, event: Event) -> None:
            self.logger.info("order shipped", order_id=event.payload["id"])
"""

from __future__ import annotations

from .logger_tool import Logger

__all__ = ("Logger",)
