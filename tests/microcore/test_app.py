"""create_app: an ASGI app whose lifespan runs the kernel and whose requests go to a tool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import microcore
from microcore import create_app
from microcore._app import MicroCoreApp
from tests.conftest import ProjectFactory

ECHO_TOOL = """
from microcore import Tool


class EchoTool(Tool):
    name = "echo"

    def asgi(self):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["path"].encode()})
        return app
"""


async def lifespan(
    app: MicroCoreApp, body: Callable[[], Awaitable[None]] | None
) -> list[dict[str, Any]]:
    """Drive the ASGI lifespan protocol around ``body`` and return what the app sent."""
    to_app_send, to_app_receive = anyio.create_memory_object_stream[dict[str, Any]](10)
    sent: list[dict[str, Any]] = []
    started = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        started.set()

    async with to_app_send, to_app_receive, anyio.create_task_group() as tg:
        tg.start_soon(app, {"type": "lifespan"}, to_app_receive.receive, send)
        await to_app_send.send({"type": "lifespan.startup"})
        with anyio.fail_after(10):
            await started.wait()
        if sent[0]["type"] == "lifespan.startup.complete":
            if body is not None:
                await body()
            await to_app_send.send({"type": "lifespan.shutdown"})
    return sent


async def call(
    app: MicroCoreApp, scope_type: str = "http", path: str = "/x"
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": scope_type, "path": path}, receive, send)
    return sent


async def test_lifespan_boots_and_forwards_requests_to_the_serving_tool(
    make_project: ProjectFactory,
) -> None:
    """Startup boots the kernel, requests reach the tool's ASGI app, shutdown completes."""
    root = make_project({"tools/echo/echo_tool.py": ECHO_TOOL}, tools=["config", "logger"])
    app = create_app(root, environ={})
    replies: list[dict[str, Any]] = []

    async def body() -> None:
        replies.extend(await call(app, path="/hello"))

    sent = await lifespan(app, body)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert replies[1]["body"] == b"/hello"


async def test_lifespan_reports_a_configuration_error_as_startup_failed(
    make_project: ProjectFactory,
) -> None:
    """A project the app cannot start with fails startup with the reason."""
    root = make_project(
        {
            "tools/a/a_tool.py": "from microcore import Tool\nclass A(Tool):\n    name = 'x'\n",
            "tools/b/b_tool.py": "from microcore import Tool\nclass B(Tool):\n    name = 'x'\n",
        },
        tools=[],
    )
    sent = await lifespan(create_app(root, environ={}), None)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert sent[0]["message"].startswith("ConfigurationError: two tools are named 'x'")


async def test_two_serving_tools_refuse_to_start(make_project: ProjectFactory) -> None:
    """Only one tool may serve ASGI."""
    second = ECHO_TOOL.replace("EchoTool", "Echo2").replace('"echo"', '"echo2"')
    root = make_project(
        {"tools/echo/echo_tool.py": ECHO_TOOL, "tools/echo2/echo2_tool.py": second}, tools=[]
    )
    sent = await lifespan(create_app(root, environ={}), None)
    assert "more than one tool serves ASGI (echo, echo2)" in sent[0]["message"]


async def test_requests_without_a_serving_tool_get_503(make_project: ProjectFactory) -> None:
    """Before boot (or with no http tool) HTTP gets a JSON 503 and websockets are closed."""
    app = create_app(make_project({}, tools=[]), environ={})
    start, body = await call(app)
    assert start["status"] == 503
    assert b'"code":"not_ready"' in body["body"]
    assert await call(app, "websocket") == [{"type": "websocket.close", "code": 1013}]


def test_create_app_defaults_to_the_callers_folder() -> None:
    """create_app() in app.py serves the folder app.py lives in."""
    app = create_app()
    assert app.kernel.root == Path(__file__).resolve().parent


def test_public_names_are_exported() -> None:
    """The facade exports exactly the public API, each name importable."""
    assert microcore.__all__ == (
        "Event",
        "MicroCoreError",
        "NoResponder",
        "Plugin",
        "RequestTimeout",
        "Tool",
        "create_app",
    )
    for name in microcore.__all__:
        assert getattr(microcore, name) is not None
    assert issubclass(microcore.RequestTimeout, TimeoutError)
