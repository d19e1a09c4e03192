"""``create_app``: the ASGI app. Lifespan runs the kernel; requests go to the serving tool."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from ._kernel import Kernel
from ._tool import Message, Scope

__all__ = ("MicroCoreApp", "create_app")

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
            async with self.kernel.run():
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
