"""Fixtures for the http tool: boot a throwaway project and talk to it over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, cast

import httpx
import pytest_asyncio

from microcore.testing import RunningApp, start_app
from tools.http.http_tool import HttpTool

HTTP_TOOLS = ["config", "logger", "http"]


class Served:
    """A booted project and an HTTP client over it."""

    def __init__(self, running: RunningApp, client: httpx.AsyncClient) -> None:
        self.running = running
        self.client = client

    @property
    def kernel(self) -> Any:
        return self.running.kernel

    @property
    def http(self) -> HttpTool:
        # the project's own copy of the tool: the same code, maybe not the same class object
        return cast("HttpTool", self.running.kernel.tool("http"))


Serve = Callable[..., Awaitable[Served]]


@pytest_asyncio.fixture
async def serve(make_project: Any) -> AsyncIterator[Serve]:
    """``await serve({"domains/a/plugins/x_plugin.py": "..."}, settings={...})``: boot, connect."""
    async with AsyncExitStack() as stack:

        async def boot(
            files: Mapping[str, str], *, settings: Mapping[str, str] | None = None
        ) -> Served:
            root = make_project(dict(files), tools=HTTP_TOOLS)
            running = await start_app(root, settings=settings)
            stack.push_async_callback(running.stop)
            transport = httpx.ASGITransport(app=running.app)
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            stack.push_async_callback(client.aclose)
            return Served(running, client)

        yield boot


# -- with the auth and state tools (auth=, rate=) ---------------------------------------

AUTH_TOOLS = ["config", "logger", "state", "http", "auth"]
SECRET = "x" * 48  # AUTH_SECRET: 32 bytes or more

Boot = Callable[..., Awaitable[tuple[RunningApp, httpx.AsyncClient]]]


@pytest_asyncio.fixture
async def boot(make_project: Any) -> AsyncIterator[Boot]:
    """``await boot(files, settings=...)``: a project with the auth and state tools, a client."""
    async with AsyncExitStack() as stack:

        async def start(
            files: Mapping[str, str], *, settings: Mapping[str, str] | None = None
        ) -> tuple[RunningApp, httpx.AsyncClient]:
            root = make_project(dict(files), tools=AUTH_TOOLS)
            running = await start_app(root, settings={"AUTH_SECRET": SECRET, **(settings or {})})
            stack.push_async_callback(running.stop)
            transport = httpx.ASGITransport(app=running.app)
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            stack.push_async_callback(client.aclose)
            return running, client

        yield start
