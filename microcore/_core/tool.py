"""The tool base class: infrastructure that plugins receive by parameter name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .ownership import Owner

__all__ = ("ASGIApp", "Tool")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


class Tool:
    """Base class of an infrastructure tool.

    A tool has a unique ``name``: the constructor parameter that plugins use to
    receive it. Its own constructor may name other tools (and, for tools only,
    ``kernel``); hooks are coroutines::

        class StateTool(Tool):
            name = "state"

            async def setup(self): ...            # open connections, read config
            async def on_boot_complete(self): ... # after every plugin booted
            async def shutdown(self): ...         # release resources

    Public methods' signatures and docstrings are the manifest (AI_CONTEXT.md).
    """

    name: ClassVar[str] = ""
    reserved_routes: ClassVar[tuple[str, ...]] = ()
    """Routes the tool serves itself (``"GET /docs"``), so ``microcore check`` sees collisions."""

    async def setup(self) -> None:
        """Open connections, read configuration. Independent tools set up concurrently."""

    async def on_boot_complete(self) -> None:
        """Called once after every plugin has booted, before serving."""

    async def drain(self) -> None:
        """Called first at shutdown, while plugins still run: finish queued work in a deadline."""

    async def shutdown(self) -> None:
        """Release resources. Called after every plugin shut down, in reverse set-up order."""

    def bind(self, owner: Owner) -> object:
        """Return what a plugin receives for this tool. Registrations must be recorded on ``owner``.

        The default hands out the tool itself, which suits tools that register nothing.
        """
        return self

    def on_plugins_changed(self) -> None:
        """Called synchronously right after plugins were activated or released, so a tool can
        swap what it serves atomically (no other task runs in between)."""

    def asgi(self) -> ASGIApp | None:
        """The ASGI application this tool serves, if any. The app hands requests to it."""
        return None
