"""A project boots in the test's loop through microcore.testing.start_app."""

from __future__ import annotations

from microcore.testing import start_app
from tests.conftest import ProjectFactory


async def test_start_app_boots_and_stops(make_project: ProjectFactory) -> None:
    """A plugin with a logger boots ok and the app stops cleanly."""
    root = make_project(
        {
            "domains/a/plugins/x_plugin.py": """
            from microcore import Plugin
            class XPlugin(Plugin):
                def __init__(self, logger):
                    self.logger = logger
                async def on_boot(self):
                    self.logger.info("hi")
            """
        },
        tools=["config", "logger"],
    )
    running = await start_app(root)
    try:
        assert running.kernel.status().plugins["a.XPlugin"].status == "ok"
    finally:
        await running.stop()
