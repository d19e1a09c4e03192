"""``create_app``: the ASGI app. Lifespan runs the kernel; requests go to the serving tool."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import structlog

from ._core.kernel import Kernel
from ._core.tool import Message, Scope

__all__ = ("MicroCoreApp", "create_app", "running")

_log = structlog.get_logger("microcore")

_NOT_READY = (
    b'{"success":false,"error":{"code":"not_ready",'
    b'"message":"the app has not booted, or no tool serves HTTP"}}'
)


class MicroCoreApp:
    """An ASGI app around a :class:`Kernel` (kept blind: it forwards to whichever tool serves)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        handler = self.kernel.asgi_app
        if handler is not None:
            await handler(scope, receive, send)
        elif scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": _NOT_READY})
        else:
            await send({"type": "websocket.close", "code": 1013})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        message: Message = await receive()
        started = False
        try:
            async with running(self.kernel):
                started = True
                await send({"type": "lifespan.startup.complete"})
                while message["type"] != "lifespan.shutdown":
                    message = await receive()
        except Exception as exc:  # noqa: BLE001 - isolation boundary: report to the server, do not crash it
            _log.exception("startup_failed" if not started else "shutdown_failed")
            kind = "lifespan.startup.failed" if not started else "lifespan.shutdown.failed"
            await send({"type": kind, "message": f"{type(exc).__name__}: {exc}"})
            return
        await send({"type": "lifespan.shutdown.complete"})


@asynccontextmanager
async def running(kernel: Kernel) -> AsyncIterator[Kernel]:
    """Run ``kernel`` (boot on enter, shutdown on exit) with hot reload when the settings ask
    for it (``MICROCORE_RELOAD=1``): the core stays free of developer tooling."""
    async with kernel.run():
        if not _truthy(kernel.settings.get("MICROCORE_RELOAD")):
            yield kernel
            return
        from ._dev.reload import Reloader  # only development pays for watchfiles

        reloader = Reloader(kernel)
        kernel.start_background(reloader.watch, name="microcore-reloader")
        try:
            yield kernel
        finally:
            with anyio.CancelScope(shield=True):  # no reload may commit after shutdown starts
                await reloader.close()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def create_app(
    root: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> MicroCoreApp:
    """The ASGI app of the project in ``root`` (default: the folder of the calling module).

    >>> app = create_app()          # in app.py; then: uvicorn app:app
    """
    if root is None:
        caller = sys._getframe(1).f_globals.get("__file__")
        root = Path(caller).parent if caller else Path.cwd()
    return MicroCoreApp(Kernel(root, environ=environ))
