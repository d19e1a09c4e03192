"""Fixtures for the sidecar tool: a project with a Node.js sidecar and a Python plugin.

A test that takes the ``transport`` fixture indirectly (``@TRANSPORTS``) runs once per
transport: ``stdio`` and ``nats`` (the app's bus on NATS, a JetStream stream and subject
root of the test's own, deleted afterwards). NATS is found at ``MICROCORE_TEST_NATS``
(default ``nats://127.0.0.1:4222``); when it does not answer the NATS runs skip, and fail
under ``CI=true``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import httpx
import pytest
import pytest_asyncio

from microcore import Event
from microcore.testing import RunningApp, start_app
from microcore.tooling import Owner
from tests.support import NATS_URL, BootedApp, delete_stream
from tests.tools.conftest import require_service

if TYPE_CHECKING:
    from tools.event_bus import EventBus
    from tools.sidecar.sidecar_tool import SidecarTool

HERE = Path(__file__).parent
TRANSPORTS = pytest.mark.parametrize("transport", ["stdio", "nats"], indirect=True)
TOOLS = ["config", "logger", "http", "event_bus", "system", "sidecar"]
FAST = {  # restarts and stops quick enough for tests
    "SIDECAR_RESTART_BACKOFF": "0.05",
    "SIDECAR_STOP_TIMEOUT": "2",
    "SIDECAR_READY_TIMEOUT": "20",
    "LOG_LEVEL": "WARNING",
}

WORKER_TOML = """
doc = "The test worker."
command = ["node", "worker.js"]

[declares]
routes = [
    "GET /js/hello/{name}", "POST /js/echo", "GET /js/text", "GET /js/fail", "GET /js/boom",
    "GET /js/slow", "GET /js/crash", "GET /js/ask", "GET /js/nobody",
]
responds = ["js.double"]
subscribes = ["test.ping"]
publishes = ["js.pong"]
requests = ["py.echo"]
"""

ECHO_PLUGIN = """
from microcore import Plugin


class EchoPlugin(Plugin):
    def __init__(self, event_bus):
        self.bus = event_bus

    async def on_boot(self):
        await self.bus.subscribe("py.echo", self.echo)

    async def echo(self, event):
        return {"echo": event.payload, "by": "python"}
"""


def worker_files(transport: str = "stdio") -> dict[str, str]:
    return {
        "domains/lab/__init__.py": "",
        "domains/lab/plugins/echo_plugin.py": ECHO_PLUGIN,
        "domains/lab/plugins/worker.sidecar.toml": f'transport = "{transport}"\n{WORKER_TOML}',
        "domains/lab/plugins/worker.js": (HERE / "worker.js").read_text(),
    }


class Lab(BootedApp):
    """A booted project with its sidecar, an HTTP client over it and a probe on the bus."""

    def __init__(self, running: RunningApp, client: httpx.AsyncClient) -> None:
        super().__init__(running, client)
        owner = Owner("tests.probe")
        owner.activate()
        self.probe: EventBus = self.bus.bind(owner)

    @property
    def tool(self) -> SidecarTool:
        return cast("SidecarTool", self.kernel.tool("sidecar"))

    def plugin(self, identity: str = "lab.worker") -> Any:
        return self.kernel.status().plugins[identity]

    async def published(self, name: str, *, timeout: float = 10.0) -> Event:
        """The first event named ``name`` in the bus history, waiting up to ``timeout``."""
        return await super().published(name, timeout=timeout)


class Boot(Protocol):
    def __call__(
        self, *, settings: Mapping[str, str] | None = None, files: Mapping[str, str] | None = None
    ) -> Awaitable[Lab]: ...


@pytest.fixture
def node() -> str:
    """The Node.js executable (the sidecar tests need it)."""
    found = shutil.which("node")
    if found is None:  # pragma: no cover - CI has Node.js 20
        pytest.skip("node is not installed")
    return found


@asynccontextmanager
async def on_nats() -> AsyncIterator[dict[str, str]]:
    """Settings for an app whose bus is on NATS, with a stream (and subject root) of its own,
    deleted afterwards; skips (fails under CI=true) when NATS does not answer."""
    require_service("NATS", NATS_URL, 4222)
    name = f"sidecar_{uuid.uuid4().hex[:12]}"
    try:
        yield {"EVENT_BUS_URL": NATS_URL, "EVENT_BUS_STREAM": name}
    finally:
        await delete_stream(name)


@pytest_asyncio.fixture
async def nats_settings() -> AsyncIterator[dict[str, str]]:
    """:func:`on_nats` as a fixture."""
    async with on_nats() as settings:
        yield settings


@pytest_asyncio.fixture
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    """The worker's transport (``stdio`` unless parametrized) as ``{"transport": ...}`` plus
    the settings it needs."""
    name = getattr(request, "param", "stdio")
    if name == "stdio":
        yield {"transport": "stdio"}
        return
    async with on_nats() as settings:
        yield {"transport": name, **settings}


@pytest_asyncio.fixture
async def boot(
    make_project: Callable[..., Path], node: str, transport: dict[str, str]
) -> AsyncIterator[Boot]:
    """``await boot(settings=..., files=...)``: the lab project (plus ``files``), booted, its
    worker on ``transport``."""
    chosen, transport_settings = transport["transport"], dict(transport)
    del transport_settings["transport"]
    async with AsyncExitStack() as stack:

        async def start(
            *, settings: Mapping[str, str] | None = None, files: Mapping[str, str] | None = None
        ) -> Lab:
            root = make_project({**worker_files(chosen), **(files or {})}, tools=TOOLS)
            merged = {**FAST, **transport_settings, **(settings or {})}
            running = await start_app(root, settings=merged)
            stack.push_async_callback(running.stop)
            transport = httpx.ASGITransport(app=running.app)
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            stack.push_async_callback(client.aclose)
            return Lab(running, client)

        yield start
