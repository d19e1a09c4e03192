"""Through HTTP: broken plugins and tools are shown failed, serve nothing, and harm no one."""

from __future__ import annotations

import httpx

from microcore.testing import start_app
from tests.conftest import ProjectFactory

WORKING = """
from microcore import Plugin

class PingPlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/ping", "GET", self.ping)

    async def ping(self, data, context):
        return {"pong": True}
"""

MISSING_TOOL = """
from microcore import Plugin

class PayPlugin(Plugin):
    def __init__(self, http, payments):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/pay", "POST", self.pay)

    async def pay(self, data, context):
        return {}
"""

HALF_BOOT = """
from microcore import Plugin

class HalfPlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/half", "GET", self.half)
        raise RuntimeError("database schema missing")

    async def half(self, data, context):
        return {}
"""

FLAKY_TOOL = """
from microcore import Tool

class FlakyTool(Tool):
    name = "flaky"

    async def setup(self):
        raise ConnectionError("cannot reach the flaky service")
"""

NEEDS_FLAKY = """
from microcore import Plugin

class FlakyUserPlugin(Plugin):
    def __init__(self, http, flaky):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/flaky", "GET", self.get)

    async def get(self, data, context):
        return {}
"""


async def test_failures_are_visible_and_isolated(make_project: ProjectFactory) -> None:
    """Missing tool, on_boot raising after a route, failed tool setup: each failed, rest serves."""
    root = make_project(
        {
            "tools/flaky/flaky_tool.py": FLAKY_TOOL,
            "domains/shop/plugins/ping_plugin.py": WORKING,
            "domains/shop/plugins/pay_plugin.py": MISSING_TOOL,
            "domains/shop/plugins/half_plugin.py": HALF_BOOT,
            "domains/shop/plugins/flaky_user_plugin.py": NEEDS_FLAKY,
        },
        tools=["config", "logger", "http", "system"],
    )
    running = await start_app(root)
    transport = httpx.ASGITransport(app=running.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/ping")).json() == {"pong": True}
            for path, method in [("/pay", "POST"), ("/half", "GET"), ("/flaky", "GET")]:
                assert (await client.request(method, path)).status_code == 404, path

            status = (await client.get("/system/status")).json()
            plugins, tools = status["plugins"], status["tools"]
            assert plugins["shop.PingPlugin"]["routes"] == ["GET /ping"]
            assert (
                "needs tool 'payments', which is not registered"
                in (plugins["shop.PayPlugin"]["error"]["message"])
            )
            half = plugins["shop.HalfPlugin"]
            assert (half["status"], half["routes"]) == ("failed", [])
            assert half["error"]["message"] == "database schema missing"
            assert half["error"]["file"] == "domains/shop/plugins/half_plugin.py"
            assert tools["flaky"]["error"]["message"] == "cannot reach the flaky service"
            assert (
                "needs tool 'flaky', which failed"
                in (plugins["shop.FlakyUserPlugin"]["error"]["message"])
            )

            health = await client.get("/system/health")
            assert health.status_code == 503
            assert health.json() == {
                "success": False,
                "error": {
                    "code": "not_ready",
                    "message": "not ready: tool flaky; plugin shop.FlakyUserPlugin; "
                    "plugin shop.HalfPlugin; plugin shop.PayPlugin",
                },
                "status": "failed",
                "tools": ["flaky"],
                "plugins": ["shop.FlakyUserPlugin", "shop.HalfPlugin", "shop.PayPlugin"],
                "services": {},
            }
    finally:
        await running.stop()
