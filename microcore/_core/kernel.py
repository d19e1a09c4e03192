"""The kernel: tools, plugins and their lifecycle. It knows nothing of HTTP, SQL or any domain.

Boot: tools set up (independent ones concurrently) -> each plugin file is
staged and committed -> tools ``on_boot_complete``. Shutdown runs in reverse:
tools drain, every plugin is unloaded and retired, tools shut down. Hot reload
(developer tooling, outside the core) uses the same three verbs:
``stage`` -> ``commit`` -> ``retire``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

from .discovery import ErrorInfo, find_plugin_files
from .errors import ConfigurationError
from .lifecycle import Batch, PluginSet
from .logs import configure_logging
from .records import FAILED, PluginRecord, ToolRecord
from .settings import load_settings
from .status import PluginStatus, SystemStatus, ToolStatus, relative, render_error
from .tool import ASGIApp, Tool
from .toolset import ToolSet
from .tracing import TRACING

__all__ = ("Batch", "Kernel")

_log = structlog.get_logger("microcore")

Listener = Callable[[], Awaitable[None] | None]


class Kernel:
    """Loads a project folder (``tools/``, ``domains/``) and runs its lifecycle.

    >>> kernel = Kernel(Path("."))
    >>> async with kernel.run():      # boot ... shutdown
    ...     kernel.status().plugins
    """

    def __init__(
        self,
        root: Path | str,
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self._environ = environ
        self._overrides = dict(overrides or {})
        self.settings: dict[str, str] = {}
        self._tools = ToolSet(self.root)
        self._plugins = PluginSet(self.root, self._tools, self.start_background)
        self.booted = False
        self.boot_seconds: float | None = None
        self.booted_at: float | None = None
        self.reloaded_at: float | None = None
        self.reload_ms: float | None = None
        self._reload_listeners: list[Listener] = []
        self._asgi: ASGIApp | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    # -- what it holds -------------------------------------------------------------

    @property
    def tools(self) -> dict[str, ToolRecord]:
        """Every discovered tool (working or failed) by name."""
        return self._tools.records

    @property
    def plugins(self) -> dict[str, PluginRecord]:
        """Every loaded (or failed) plugin by identity, ``<domain>.<Class>``."""
        return self._plugins.records

    @property
    def reload_errors(self) -> dict[Path, ErrorInfo]:
        """Files whose new version failed to load while the previous one keeps serving."""
        return self._plugins.reload_errors

    @property
    def hook_timeout(self) -> float:
        """``MICROCORE_HOOK_TIMEOUT``: the bound on every hook and on waiting for idle plugins."""
        return self._tools.hook_timeout

    @property
    def asgi_app(self) -> ASGIApp | None:
        return self._asgi

    def tool(self, name: str) -> Tool:
        """A running tool by name (for tools and tests; plugins get theirs injected)."""
        return self._tools.get(name)

    # -- running -----------------------------------------------------------------------

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Kernel]:
        """Boot on enter, shut down on exit; background tasks live in between."""
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                try:
                    await self.boot()
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.shutdown()
                    self._task_group = None
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # surface the error itself, not a group of one
                raise group.exceptions[0] from group.exceptions[0].__cause__
            raise

    def start_background(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None
    ) -> None:
        """Run ``fn(*args)`` in the kernel's task group until shutdown (tools only)."""
        if self._task_group is None:
            raise RuntimeError("the kernel is not running; use 'async with kernel.run()'")
        self._task_group.start_soon(fn, *args, name=name)

    async def boot(self) -> None:
        started = time.perf_counter()
        self.settings = load_settings(self.root, self._environ)
        self.settings.update(self._overrides)
        self._tools.hook_timeout = _seconds(self.settings, "MICROCORE_HOOK_TIMEOUT", 30.0)
        configure_logging(
            fmt=self.settings.get("LOG_FORMAT") or None,
            level=self.settings.get("LOG_LEVEL", "INFO"),
        )
        _log.info("boot_started", root=str(self.root))
        TRACING.configure(self.settings, service=self.root.name)
        await self._tools.load(self)
        for path in find_plugin_files(self.root):
            self.commit(await self.stage([path]))
        await self._tools.call_all("on_boot_complete")
        self._asgi = self._tools.asgi()
        self.booted = True
        self.booted_at = time.time()
        self.boot_seconds = time.perf_counter() - started
        failures = self.failures()
        _log.info(
            "boot_complete",
            tools=len(self.tools),
            plugins=len(self.plugins),
            failed=failures["tools"] + failures["plugins"],
            ms=round(self.boot_seconds * 1000, 1),
        )

    async def shutdown(self) -> None:
        if not self.booted and not self.tools:
            return
        _log.info("shutdown_started")
        with anyio.move_on_after(self.hook_timeout):  # versions a reload swapped out
            await self._plugins.wait_retired()
        await self._tools.call_all("drain", reverse=True)
        for identity in reversed(list(self.plugins)):
            await self.unload(identity)
        await self._tools.call_all("shutdown", reverse=True)
        if TRACING.enabled:
            await anyio.to_thread.run_sync(TRACING.flush)
        self.booted = False
        _log.info("shutdown_complete")

    # -- the plugin lifecycle: stage -> commit -> retire --------------------------------

    async def stage(self, load: Iterable[Path] = (), unload: Iterable[Path] = ()) -> Batch:
        """Boot the plugins of the files in ``load`` under pending owners (not serving yet)
        and note what they replace, and every plugin of the files in ``unload``.

        A file whose new version fails while its previous one serves keeps the previous one.
        """
        return await self._plugins.stage(load, unload)

    def commit(self, batch: Batch) -> None:
        """Swap ``batch`` in atomically (no await): its new versions serve, those it replaces
        stop taking work. Follow with :meth:`retire`."""
        self._plugins.commit(batch)

    def retire(self, batch: Batch) -> None:
        """Shut down, in the background, the versions ``batch`` replaced, once the calls they
        serve have finished (shutdown waits for it)."""
        self._plugins.retire(batch)

    async def unload(self, identity: str) -> None:
        """Stop a plugin now: it stops serving at once, then shuts down and is released."""
        record = self.plugins.get(identity)
        if record is None:
            return
        batch = Batch()
        batch.old.append(record)
        self.commit(batch)
        await self._plugins.release(batch.old)

    def add_reload_listener(self, listener: Listener) -> None:
        """Call ``listener`` after every hot reload (e.g. to regenerate AI_CONTEXT.md)."""
        self._reload_listeners.append(listener)

    async def notify_reloaded(self, ms: float) -> None:
        """Record that a hot reload finished in ``ms`` and tell the reload listeners."""
        self.reloaded_at, self.reload_ms = time.time(), ms
        for listener in self._reload_listeners:
            try:
                result = listener()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - isolation boundary: one listener
                _log.exception("reload_listener_failed")

    # -- introspection ---------------------------------------------------------------

    def status(self) -> SystemStatus:
        """Every tool and plugin with status, error, file and registrations; boot and reload
        times: what ``/system/status`` shows."""
        root = self.root
        plugins: dict[str, PluginStatus] = {}
        for identity in sorted(self.plugins):
            record = self.plugins[identity]
            registrations: dict[str, list[str]] = {}
            for registration in record.owner.registrations:
                registrations.setdefault(registration.kind, []).append(registration.label)
            plugins[identity] = PluginStatus(
                status=record.status,
                error=render_error(root, record.error),
                reload_error=render_error(root, self.reload_errors.get(record.file.resolve())),
                file=relative(root, record.file),
                domain=record.domain,
                tools=list(record.tools),
                registrations=registrations,
                loaded_at=record.loaded_at,
            )
        plugins = dict(sorted({**self._hosted(), **plugins}.items()))  # the kernel's own win
        tools = {
            name: ToolStatus(
                status=r.status, error=render_error(root, r.error), file=relative(root, r.file)
            )
            for name, r in sorted(self.tools.items())
        }
        reload_errors = {
            relative(root, path) or str(path): view
            for path, error in sorted(self.reload_errors.items())
            if (view := render_error(root, error)) is not None
        }
        return SystemStatus(
            tools=tools,
            plugins=plugins,
            booted_at=self.booted_at,
            boot_ms=None if self.boot_seconds is None else round(self.boot_seconds * 1000, 1),
            reloaded_at=self.reloaded_at,
            reload_ms=self.reload_ms,
            reload_errors=reload_errors,
        )

    def failures(self) -> dict[str, list[str]]:
        """Names of failed tools and plugins (``/system/health``)."""
        hosted = [
            n for n, s in self._hosted().items() if s.status == FAILED and n not in self.plugins
        ]
        return {
            "tools": sorted(n for n, r in self.tools.items() if r.status == FAILED),
            "plugins": sorted({*self._plugins.failed(), *hosted}),
        }

    def _hosted(self) -> dict[str, PluginStatus]:
        """The plugins tools run themselves (``Tool.hosted_plugins``), by identity."""
        found: dict[str, PluginStatus] = {}
        for record, tool in self._tools.running():
            try:
                found.update(tool.hosted_plugins())
            except Exception:  # noqa: BLE001 - isolation boundary: one tool's report
                _log.exception("hosted_plugins_failed", tool=record.name)
        return found


def _seconds(settings: Mapping[str, str], key: str, default: float) -> float:
    raw = settings.get(key)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{key} must be a number of seconds, got {raw!r}") from exc
