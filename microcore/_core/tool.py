"""The tool base class: infrastructure that plugins receive by parameter name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

if TYPE_CHECKING:
    from .ownership import Owner
    from .status import PluginStatus

__all__ = ("ASGIApp", "FilesApplied", "Tool")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


class FilesApplied(msgspec.Struct, frozen=True, kw_only=True):
    """What a tool did with changed project files during a hot reload (``Tool.files_changed``)."""

    applied: tuple[Path, ...] = ()  # files the tool took in, in-process
    failed: dict[Path, str] = {}  # files it refused or could not apply, with why
    reload_domains: tuple[str, ...] = ()  # domains whose plugins must reload after it


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

    async def files_changed(self, paths: Sequence[Path]) -> FilesApplied:
        """Hot reload: take in changed project files this tool owns, in-process (the db tool
        applies a new migration). ``paths`` are absolute; what the tool does not own it leaves
        out of the answer. A failure leaves the tool as it was and shows in ``/system/status``."""
        return FilesApplied()

    async def probe(self) -> str | None:
        """Readiness: None when the service this tool depends on answers now, else why not
        (``"PostgreSQL at db:5432 unreachable: ..."``). ``/system/health`` calls it at most
        every few seconds, bounded by a short timeout: keep it cheap (a ping, ``SELECT 1``)."""
        return None

    def hosted_plugins(self) -> Mapping[str, PluginStatus]:
        """Plugins this tool runs itself, outside the kernel's loader (a program in another
        language, say), by identity (``<domain>.<name>``): ``/system/status`` lists them and
        ``/system/health`` counts a failed one, like any plugin. Called on every status read:
        keep it cheap."""
        return {}

    def asgi(self) -> ASGIApp | None:
        """The ASGI application this tool serves, if any. The app hands requests to it."""
        return None
