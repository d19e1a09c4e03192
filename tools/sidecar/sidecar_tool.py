"""The ``sidecar`` tool: plugins written in any language, on the same bus, under the same kernel.

A sidecar is one declaration file plus its program, in a domain's ``plugins/`` folder::

    domains/products/plugins/price_format.sidecar.toml   # command, cwd, env, [declares]
    domains/products/plugins/price_format.js             # the program (any language)

The tool starts every declared program once the plugins have booted, speaks the sidecar
protocol with it (JSON lines over its stdin and stdout, ``_protocol.py``, or NATS messages
on subjects of its own, ``_nats.py``; its stderr goes to the log under its identity), and
serves what it registers through the ``http`` and
``event_bus`` tools, owned like a Python plugin's registrations. It supervises each one:
a crash marks it failed (routes answer 503, subscriptions end) and restarts it with
backoff; an edit of its declaration or its watched source files restarts only it,
atomically (the old run serves until the new one is ready); shutdown closes its stdin,
then sends SIGTERM, then SIGKILL, within ``SIDECAR_STOP_TIMEOUT``.

Each sidecar shows in ``/system/status`` like a plugin (``Tool.hosted_plugins``), with
``pid``, ``restarts``, ``state`` and ``last_error`` in its ``details``. Settings: see
``_settings.py``. Module map: ``_declaration`` (the .sidecar.toml), ``_protocol`` (the
messages), ``_nats`` (the NATS transport), ``_instance`` (one process), ``_supervisor`` (one
sidecar over its life).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from microcore import Tool
from microcore.tooling import (
    ConfigurationError,
    ErrorView,
    FilesApplied,
    KernelView,
    Owner,
    PluginStatus,
    find_declarations,
)
from tools.config import Config
from tools.event_bus import EventBus
from tools.event_bus.event_bus_tool import EventBusTool
from tools.http import Http
from tools.http.http_tool import HttpTool

from ._declaration import SUFFIX, Declaration, read_declaration
from ._instance import Instance
from ._settings import SidecarSettings, read_settings
from ._supervisor import Sidecar

__all__ = ("SidecarTool",)

_log = structlog.get_logger("microcore.sidecar", tool="sidecar")


class SidecarTool(Tool):
    """Runs plugins written in other languages (``*.sidecar.toml``) and serves what they register.

    Plugins do not call it; ``sidecars()`` tells tools and tests how each one is doing.
    """

    name = "sidecar"

    def __init__(
        self, config: Config, http: HttpTool, event_bus: EventBusTool, kernel: KernelView
    ) -> None:
        self._config = config
        self._kernel = kernel
        self._host = _Host(http, event_bus, kernel)
        self._sidecars: dict[str, Sidecar] = {}
        self._broken: dict[Path, str] = {}  # declarations that cannot be read, with why
        self._booted = False

    # -- lifecycle ---------------------------------------------------------------------

    async def setup(self) -> None:
        self._host.settings = read_settings(self._config)
        root = self._kernel.root
        for path in find_declarations(root):
            self._declare(root, path.resolve())

    async def on_boot_complete(self) -> None:
        """Start every program once the plugins have booted; wait for each first start
        (bounded by ``SIDECAR_READY_TIMEOUT``)."""
        self._booted = True
        for sidecar in self._sidecars.values():
            self._host.spawn(sidecar.supervise, name=f"sidecar:{sidecar.decl.identity}:supervise")
        for sidecar in self._sidecars.values():
            await sidecar.first_attempt.wait()

    async def shutdown(self) -> None:
        """Stop every program (stdin closed, then SIGTERM, then SIGKILL), concurrently."""
        async with anyio.create_task_group() as tg:
            for sidecar in self._sidecars.values():
                tg.start_soon(sidecar.stop)

    async def files_changed(self, paths: Sequence[Path]) -> FilesApplied:
        """Restart the sidecars whose declaration or watched files changed; start new
        declarations, stop deleted ones. A new run that fails leaves the old one serving."""
        root = self._kernel.root
        applied: list[Path] = []
        failed: dict[Path, str] = {}
        restart: dict[str, list[Path]] = {}
        for path in paths:
            if path.name.endswith(SUFFIX) and path.parent.name == "plugins":
                why = await self._declaration_changed(root, path)
                (applied.append(path) if why is None else failed.__setitem__(path, why))
                continue
            for identity, sidecar in self._sidecars.items():
                if sidecar.decl.watches(path):
                    restart.setdefault(identity, []).append(path)
        for identity, changed in sorted(restart.items()):
            why = await self._sidecars[identity].start()
            if why is None:
                applied.extend(changed)
            else:
                failed.update((p, why) for p in changed)
        return FilesApplied(applied=tuple(applied), failed=failed)

    async def _declaration_changed(self, root: Path, path: Path) -> str | None:
        identity = _identity(root, path)
        sidecar = self._sidecars.get(identity)
        if not await anyio.Path(path).exists():
            self._broken.pop(path, None)
            if sidecar is not None:
                del self._sidecars[identity]
                await sidecar.stop()
            return None
        if sidecar is None:
            sidecar = self._declare(root, path)
            if sidecar is None:
                return self._broken[path]
            if self._booted:
                self._host.spawn(sidecar.supervise, name=f"sidecar:{identity}:supervise")
                await sidecar.first_attempt.wait()
            return sidecar.last_error
        try:
            decl = self._read(root, path)
        except ConfigurationError as exc:
            sidecar.reload_error = str(exc)
            return str(exc)
        if decl.digest == sidecar.decl.digest:  # saved as it serves (or a broken edit undone)
            sidecar.reload_error = None
            return None
        return await sidecar.start(decl)

    def _read(self, root: Path, path: Path) -> Declaration:
        """A declaration this app can run (``transport = "nats"`` needs a NATS bus)."""
        decl = read_declaration(root, path)
        if decl.transport == "nats" and self._host.settings.nats_url is None:
            raise ConfigurationError(
                f'sidecar declaration {_rel(root, path)}: transport = "nats" needs the event '
                'bus on NATS (EVENT_BUS_URL=nats://...); write transport = "auto" to use '
                "stdio without it"
            )
        return decl

    def _declare(self, root: Path, path: Path) -> Sidecar | None:
        try:
            decl = self._read(root, path)
        except ConfigurationError as exc:
            _log.error("sidecar_declaration_failed", file=_rel(root, path), error=str(exc))
            self._broken[path] = str(exc)
            return None
        self._broken.pop(path, None)
        sidecar = self._sidecars[decl.identity] = Sidecar(decl, self._host)
        return sidecar

    # -- status --------------------------------------------------------------------------

    def hosted_plugins(self) -> Mapping[str, PluginStatus]:
        """Every sidecar as a plugin: ``ok`` while a run serves, else ``failed`` with why;
        ``details`` has ``pid``, ``restarts``, ``state``, ``command``, ``last_error``,
        ``transport`` and, over NATS, the run's ``subjects`` (``in``, ``out``)."""
        root = self._kernel.root
        found: dict[str, PluginStatus] = {}
        for identity, sidecar in self._sidecars.items():
            decl, run = sidecar.decl, sidecar.current
            registrations: dict[str, list[str]] = {}
            for registration in run.owner.registrations if run is not None else ():
                registrations.setdefault(registration.kind, []).append(registration.label)
            state = _state(sidecar)
            error = None
            if state != "running":
                ended = run.error if run is not None else None
                error = sidecar.last_error or ended or f"its program is {state}"
            found[identity] = PluginStatus(
                status="ok" if state == "running" else "failed",
                error=None if error is None else _error(root, decl.file, error),
                reload_error=None
                if sidecar.reload_error is None
                else _error(root, decl.file, sidecar.reload_error),
                file=_rel(root, decl.file),
                domain=decl.domain,
                tools=["sidecar"],
                registrations=registrations,
                loaded_at=sidecar.loaded_at,
                details={
                    "kind": "sidecar",
                    "state": state,
                    "pid": run.pid if run is not None and run.alive else None,
                    "restarts": sidecar.restarts,
                    "command": shlex.join(decl.command),
                    "last_error": sidecar.last_error,
                    **_transport(run),
                },
            )
        for path, why in self._broken.items():
            identity = _identity(root, path)
            found[identity] = PluginStatus(
                status="failed",
                error=_error(root, path, why),
                reload_error=None,
                file=_rel(root, path),
                domain=path.parent.parent.name,
                tools=["sidecar"],
                registrations={},
                loaded_at=None,
                details={"kind": "sidecar", "state": "invalid"},
            )
        return found

    def sidecars(self) -> dict[str, str]:
        """Each sidecar's state by identity: ``starting``, ``running``, ``failed``.

        >>> sidecar.sidecars()
        {'products.price_format': 'running'}
        """
        return {identity: _state(s) for identity, s in sorted(self._sidecars.items())}


class _Host:
    """What a sidecar needs of the tool (the supervisor's :class:`~._supervisor.Host`)."""

    def __init__(self, http: HttpTool, bus: EventBusTool, kernel: KernelView) -> None:
        self.settings = SidecarSettings()
        self._http = http
        self._bus = bus
        self._kernel = kernel

    def bind_http(self, owner: Owner) -> Http:
        return self._http.bind(owner)

    def bind_bus(self, owner: Owner) -> EventBus:
        return self._bus.bind(owner)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str) -> None:
        self._kernel.start_background(fn, *args, name=name)

    def refresh(self) -> None:
        """What serves changed: the http and event_bus tools swap their tables."""
        self._http.on_plugins_changed()
        self._bus.on_plugins_changed()


def _transport(run: Instance | None) -> dict[str, Any]:
    if run is None:
        return {}
    if run.link is None:
        return {"transport": run.transport}
    return {
        "transport": run.transport,
        "subjects": {"in": run.link.subject_in, "out": run.link.subject_out},
    }


def _state(sidecar: Sidecar) -> str:
    if sidecar.running:
        return "running"
    if sidecar.started == 0 or (sidecar.current is None and sidecar.last_error is None):
        return "starting"
    return "failed"


def _identity(root: Path, path: Path) -> str:
    return f"{path.parent.parent.name}.{path.name.removesuffix(SUFFIX)}"


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _error(root: Path, file: Path, message: str) -> ErrorView:
    return ErrorView("SidecarError", message, _rel(root, file), None)
