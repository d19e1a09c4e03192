"""microcore under Granian (``granian --interface asgi app:app``), black-box: a real Granian
process on a free port, real clients. The same behaviour as under uvicorn: the lifespan
boots and shuts the kernel down, event streams and websockets serve, SIGTERM ends open
streams and exits cleanly with every log line written, and ``MICROCORE_RELOAD=1`` reloads
an edited plugin in place (the reloader runs inside the app, whatever the server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import ProjectFactory
from tests.support import eventually, free_port, serving

GRANIAN = shutil.which("granian", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(GRANIAN is None, reason="granian is in the dev extra")

PLUGIN = """
import anyio
from microcore import Plugin

VERSION = {version!r}


class LivePlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/version", "GET", self.version)
        self.http.add_sse("/feed", self.feed)
        self.http.add_websocket("/echo", self.echo)

    async def version(self, data, context):
        return {{"version": VERSION}}

    async def feed(self, data, context):
        yield {{"version": VERSION}}
        await anyio.sleep_forever()

    async def echo(self, websocket):
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text.upper())
"""
FILES = {
    "app.py": "from microcore import create_app\n\napp = create_app()\n",
    "domains/live/__init__.py": "",
    "domains/live/plugins/live_plugin.py": PLUGIN.format(version="one"),
}
TOOLS = ["config", "logger", "http", "system"]


def spawn_granian(root: Path, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``granian --interface asgi app:app`` in ``root``; its output to server.log."""
    assert GRANIAN is not None
    port = free_port()
    with (root / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [GRANIAN, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "app:app"],
            cwd=root,
            env={**os.environ, "LOG_FORMAT": "json", "DATABASE_URL": "sqlite://", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return f"http://127.0.0.1:{port}", process


def granian(
    root: Path, env: dict[str, str]
) -> AbstractAsyncContextManager[tuple[str, subprocess.Popen[bytes]]]:
    """Granian serving ``root``, killed at the end if a test left it running."""
    return serving(spawn_granian(root, env))


def log_events(root: Path) -> list[str]:
    events = []
    for line in (root / "server.log").read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line).get("event", ""))
    return events


async def test_granian_serves_streams_and_shuts_down_gracefully(
    make_project: ProjectFactory,
) -> None:
    """Under Granian: plain, SSE and websocket routes answer; SIGTERM with a stream open ends
    it and Granian exits 0, the access lines and ``shutdown_complete`` in its log."""
    root = make_project(FILES, tools=TOOLS)
    async with (
        granian(root, {}) as (base, process),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        assert (await client.get("/version")).json() == {"version": "one"}
        ws_url = base.replace("http://", "ws://") + "/echo"
        async with connect(ws_url) as websocket:
            await websocket.send("hello")
            assert await websocket.recv() == "HELLO"
        stream_ended = anyio.Event()
        first: list[str] = []

        async def listen() -> None:
            async with client.stream("GET", "/feed") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        first.append(line.removeprefix("data: "))
            stream_ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await eventually(lambda: first, timeout=10)
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                await stream_ended.wait()
        assert json.loads(first[0]) == {"version": "one"}
        await eventually(lambda: process.poll() is not None, timeout=15)
    assert process.returncode == 0
    events = log_events(root)
    assert "boot_complete" in events
    assert events.count("http_request") >= 2
    assert "shutdown_complete" in events


async def test_granian_hot_reload_in_development(make_project: ProjectFactory) -> None:
    """``MICROCORE_RELOAD=1`` under Granian: an edited plugin serves its new code in place."""
    root = make_project(FILES, tools=TOOLS)
    env = {"MICROCORE_ENV": "development", "MICROCORE_RELOAD": "1"}
    async with (
        granian(root, env) as (base, process),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        assert (await client.get("/version")).json() == {"version": "one"}
        plugin = root / "domains/live/plugins/live_plugin.py"
        plugin.write_text(PLUGIN.format(version="two"))

        async def reloaded() -> bool:
            return bool((await client.get("/version")).json() == {"version": "two"})

        await eventually(reloaded, timeout=20, interval=0.05)
        process.send_signal(signal.SIGTERM)
        await eventually(lambda: process.poll() is not None, timeout=15)
    assert process.returncode == 0
