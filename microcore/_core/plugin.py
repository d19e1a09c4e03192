"""The plugin base class: one file, one feature."""

from __future__ import annotations

__all__ = ("Plugin",)


class Plugin:
    """Base class of a feature.

    The constructor's parameter names say which tools to inject; ``on_boot``
    registers routes and subscriptions; ``shutdown`` releases what the plugin
    opened itself. Both hooks are coroutines::

        class ListProductsPlugin(Plugin):
            def __init__(self, http, db):
                self.http, self.db = http, db

            async def on_boot(self):
                self.http.add_endpoint("/products", "GET", self.execute)

            async def execute(self, data, context):
                return await self.db.query("SELECT * FROM products")
    """

    async def on_boot(self) -> None:
        """Register routes, subscriptions and responders. Called once after construction."""

    async def shutdown(self) -> None:
        """Release resources the plugin opened itself. Registrations are removed for you."""
