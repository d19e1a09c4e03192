"""Hot reload end to end: a real server picks up saved files without restarting or failing."""

from __future__ import annotations

import os

import anyio
import httpx

from microcore._dev.reload import Reloader
from microcore.testing import start_app
from tests.conftest import ProjectFactory
from tests.support import eventually, serve

VERSIONED = """
from microcore import Plugin

class HelloPlugin(Plugin):
    def __init__(self, http, state):
        self.http, self.state = http, state

    async def on_boot(self):
        self.http.add_endpoint("/hello", "GET", self.hello)

    async def hello(self, data, context):
        hits = await self.state.incr("hello", "hits")
        return {{"version": {version}, "hits": hits, "pid": {pid}}}
"""

PID = "__import__('os').getpid()"
APP = "from microcore import create_app\n\napp = create_app()\n"
TOOLS = ["config", "logger", "http", "state", "system"]


def test_saved_plugin_serves_new_code_in_the_same_process(make_project: ProjectFactory) -> None:
    """Edits are served by the same PID, in-memory state survives, 20 edits fail no request."""
    root = make_project(
        {
            "app.py": APP,
            "domains/demo/plugins/hello_plugin.py": VERSIONED.format(version=0, pid=PID),
        },
        tools=TOOLS,
    )
    plugin = root / "domains/demo/plugins/hello_plugin.py"
    env = {"MICROCORE_RELOAD": "1", "MICROCORE_ENV": "development"}

    async def scenario(base: str) -> None:
        failures: list[str] = []
        seen: set[int] = set()
        done = anyio.Event()
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            first = (await http.get("/hello")).json()

            async def hammer() -> None:
                while not done.is_set():
                    try:
                        response = await http.get("/hello")
                    except httpx.TransportError as exc:
                        failures.append(repr(exc))
                        continue
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                    else:
                        seen.add(response.json()["version"])

            async with anyio.create_task_group() as tg:
                tg.start_soon(hammer)
                for version in range(1, 21):
                    plugin.write_text(VERSIONED.format(version=version, pid=PID))

                    def served(v: int = version) -> bool:
                        return v in seen

                    await eventually(served, timeout=10)
                done.set()
            last = (await http.get("/hello")).json()
            status = (await http.get("/system/status")).json()

        assert failures == []
        assert seen >= set(range(1, 21))
        assert last["hits"] > first["hits"] + 20  # state survived every reload
        assert status["reloaded_at"] is not None
        assert status["plugins"]["demo.HelloPlugin"]["routes"] == ["GET /hello"]
        assert last["pid"] == first["pid"] != os.getpid()  # same server process throughout

    with serve(root, env) as base:
        anyio.run(scenario, base)


async def test_in_flight_request_finishes_on_the_old_handler(make_project: ProjectFactory) -> None:
    """A request that started before the swap completes on the old code; the next gets the new."""
    slow = """
    import anyio
    from microcore import Plugin

    class SlowPlugin(Plugin):
        def __init__(self, http, state):
            self.http, self.state = http, state

        async def on_boot(self):
            self.http.add_endpoint("/slow", "GET", self.slow)

        async def slow(self, data, context):
            await self.state.set("slow", "entered", True)
            while not await self.state.get("slow", "release"):
                await anyio.sleep(0.001)
            return {"version": VERSION}

    VERSION = 1
    """
    root = make_project({"domains/d/plugins/slow_plugin.py": slow}, tools=TOOLS)
    running = await start_app(root)
    transport = httpx.ASGITransport(app=running.app)
    state = running.kernel.tool("state")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            result: dict[str, int] = {}

            async def old_request() -> None:
                result.update((await client.get("/slow")).json())

            async with anyio.create_task_group() as tg:
                tg.start_soon(old_request)
                await eventually(lambda: state.get("slow", "entered"))  # type: ignore[attr-defined]
                path = root / "domains/d/plugins/slow_plugin.py"
                path.write_text(path.read_text().replace("VERSION = 1", "VERSION = 2"))
                report = await Reloader(running.kernel).apply([path])
                assert report.loaded == ["d.SlowPlugin"]
                await state.set("slow", "release", True)  # type: ignore[attr-defined]
            assert result == {"version": 1}
            assert (await client.get("/slow")).json() == {"version": 2}
    finally:
        await running.stop()


async def test_reload_refreshes_routes_openapi_and_ai_context(make_project: ProjectFactory) -> None:
    """After a reload the new route serves and AI_CONTEXT.md lists it; the old one is gone."""
    v1 = """
    from microcore import Plugin

    class ShopPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/old", "GET", self.handle)

        async def handle(self, data, context):
            return {}
    """
    root = make_project({"domains/shop/plugins/shop_plugin.py": v1}, tools=TOOLS)
    running = await start_app(root)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=running.app), base_url="http://t"
        ) as client:
            path = root / "domains/shop/plugins/shop_plugin.py"
            path.write_text(path.read_text().replace('"/old"', '"/new"'))
            await Reloader(running.kernel).apply([path])
            assert (await client.get("/new")).status_code == 200
            assert (await client.get("/old")).status_code == 404
            paths = (await client.get("/openapi.json")).json()["paths"]
            assert "/new" in paths
            assert "/old" not in paths
            context = (root / "AI_CONTEXT.md").read_text()
            assert "/new" in context
            assert "/old" not in context
    finally:
        await running.stop()
