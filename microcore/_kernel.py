"""The kernel: discovery, injection and lifecycle. It knows nothing of HTTP, SQL or any domain.

Boot: tools set up (independent ones concurrently) -> plugins constructed and
booted, one owner each -> tools ``on_boot_complete``. Shutdown runs in reverse:
tools drain, plugins shut down and are released, tools shut down.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence, Set
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

from ._discovery import (
    ErrorInfo,
    classes_in,
    domain_of,
    error_info,
    file_digest,
    find_plugin_files,
    find_tool_files,
    import_file,
)
from ._errors import ConfigurationError, DependencyError, MicroCoreError
from ._injection import Dependencies, dependencies_of, require_coroutine_function, resolve
from ._logging import configure_logging
from ._ownership import Owner
from ._plugin import Plugin
from ._records import FAILED, OK, PluginRecord, ToolRecord
from ._settings import load_settings
from ._status import relative, render_status
from ._tool import ASGIApp, Tool

__all__ = ("Kernel", "PluginRecord", "ToolRecord")

_log = structlog.get_logger("microcore")


class _PluginCodeError(Exception):
    """Wraps an exception raised by a plugin's own ``__init__`` or ``on_boot``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _validate_plugin_class(cls: type[Plugin], what: str) -> Dependencies:
    for hook in ("on_boot", "shutdown"):
        require_coroutine_function(getattr(cls, hook), what=f"{what}: {hook}")
    return dependencies_of(cls, what=what)


def _line_of(cls: type, exc: Exception) -> int | None:
    """The source line a class-shape error is about: the hook it names, else ``__init__``."""
    message = str(exc)
    attr = next((h for h in ("on_boot", "shutdown") if f": {h} " in message), "__init__")
    target = vars(cls).get(attr, cls)
    try:
        return inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _binder(tool: Tool, owner: Owner) -> Callable[[], object]:
    return lambda: tool.bind(owner)


def _constant(value: object) -> Callable[[], object]:
    return lambda: value


class Kernel:
    """Loads a project folder (``tools/``, ``domains/``) and runs its lifecycle.

    >>> kernel = Kernel(Path("."))
    >>> async with kernel.run():      # boot ... shutdown
    ...     kernel.status()["plugins"]
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
        self.tools: dict[str, ToolRecord] = {}
        self.plugins: dict[str, PluginRecord] = {}
        self.booted = False
        self.boot_seconds: float | None = None
        self.booted_at: float | None = None
        self.reloaded_at: float | None = None
        self.reload_ms: float | None = None
        self.reload_errors: dict[Path, ErrorInfo] = {}  # file -> why its new version failed
        self._reload_listeners: list[Callable[[], Awaitable[None] | None]] = []
        self.hook_timeout = 30.0  # MICROCORE_HOOK_TIMEOUT, read at boot
        self._order: list[str] = []  # tool names in set-up order
        self._asgi: ASGIApp | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._retiring = 0  # background releases of swapped-out versions in progress
        self._retired: anyio.Event | None = None

    # -- settings and timeouts -------------------------------------------------

    def setting_seconds(self, key: str, default: float) -> float:
        raw = self.settings.get(key)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{key} must be a number of seconds, got {raw!r}") from exc

    # -- running -----------------------------------------------------------------

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Kernel]:
        """Boot on enter, shut down on exit; background tasks live in between."""
        reloader = None
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                try:
                    await self.boot()
                    if _truthy(self.settings.get("MICROCORE_RELOAD")):
                        from ._reload import Reloader  # only development pays for watchfiles

                        reloader = Reloader(self)
                        tg.start_soon(reloader.watch, name="microcore-reloader")
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        if reloader is not None:
                            await reloader.close()
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
        self.hook_timeout = self.setting_seconds("MICROCORE_HOOK_TIMEOUT", 30.0)
        configure_logging(
            fmt=self.settings.get("LOG_FORMAT") or None,
            level=self.settings.get("LOG_LEVEL", "INFO"),
        )
        _log.info("boot_started", root=str(self.root))
        self._discover_tools()
        self._construct_tools()
        await self._setup_tools()
        for path in find_plugin_files(self.root):
            await self.load_file(path)
        for name in self._order:
            record = self.tools[name]
            if record.status == OK and record.instance is not None:
                await self._call_tool_hook(record, "on_boot_complete")
        self._asgi = self._find_asgi()
        self.booted = True
        self.booted_at = time.time()
        self.boot_seconds = time.perf_counter() - started
        failures = self.failures()
        failed = failures["tools"] + failures["plugins"]
        _log.info(
            "boot_complete",
            tools=len(self.tools),
            plugins=len(self.plugins),
            failed=failed,
            ms=round(self.boot_seconds * 1000, 1),
        )

    async def shutdown(self) -> None:
        if not self.booted and not self.tools:
            return
        _log.info("shutdown_started")
        with anyio.move_on_after(self.hook_timeout):  # versions a reload swapped out
            while self._retiring:
                self._retired = self._retired or anyio.Event()
                await self._retired.wait()
        for name in reversed(self._order):
            await self._call_tool_hook(self.tools[name], "drain")
        for identity in reversed(list(self.plugins)):
            await self.unload(identity)
        for name in reversed(self._order):
            await self._call_tool_hook(self.tools[name], "shutdown")
        self.booted = False
        _log.info("shutdown_complete")

    # -- tools -------------------------------------------------------------------

    def _discover_tools(self) -> None:
        self.tools.clear()
        for path in find_tool_files(self.root):
            try:
                module = import_file(self.root, path)
            except Exception as exc:  # noqa: BLE001 - isolation boundary: one broken tool file
                record = ToolRecord(path.parent.name, path)
                record.fail(error_info(exc, prefer=path, root=self.root))
                _log.error("tool_import_failed", file=self._rel(path), error=str(record.error))
                self._add_tool(record)
                continue
            for cls in classes_in(module, Tool):
                if not cls.name:
                    raise ConfigurationError(
                        f"tool class {cls.__name__} in {self._rel(path)} has no name; "
                        'set a class attribute, e.g. name = "cache"'
                    )
                self._add_tool(ToolRecord(cls.name, path, cls))

    def _add_tool(self, record: ToolRecord) -> None:
        other = self.tools.get(record.name)
        if other is not None:
            raise ConfigurationError(
                f"two tools are named {record.name!r}: {self._rel(other.file)} and "
                f"{self._rel(record.file)}; rename one (tool names must be unique)"
            )
        self.tools[record.name] = record

    def _construct_tools(self) -> None:
        for record in self.tools.values():
            if record.cls is None:
                continue
            try:
                record.deps = dependencies_of(record.cls, what=f"tool {record.name!r}")
                for hook in ("setup", "on_boot_complete", "drain", "shutdown"):
                    require_coroutine_function(
                        getattr(record.cls, hook), what=f"tool {record.name!r}: {hook}"
                    )
            except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool
                record.fail(error_info(exc, prefer=record.file, root=self.root))
        self._order = self._setup_order()
        for name in self._order:
            record = self.tools[name]
            if record.status == FAILED or record.cls is None:
                continue
            available: dict[str, Callable[[], Any]] = {"kernel": lambda: self}
            failed: dict[str, str] = {}
            for dep, other in self.tools.items():
                if other.status == FAILED:
                    failed[dep] = str(other.error)
                elif other.instance is not None:
                    available[dep] = _constant(other.instance)
            try:
                kwargs = resolve(record.deps, available, what=f"tool {name!r}", failed=failed)
                record.instance = record.cls(**kwargs)
            except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool
                record.fail(error_info(exc, prefer=record.file, root=self.root))
                _log.error("tool_failed", tool=name, error=str(record.error))

    def _setup_order(self) -> list[str]:
        """Tool names with every dependency before its dependents; a cycle is refused."""
        order: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                cycle = " -> ".join([*visiting[visiting.index(name) :], name])
                raise ConfigurationError(f"tools depend on each other in a cycle: {cycle}")
            visiting.append(name)
            for dep in self.tools[name].deps.names:
                if dep in self.tools:
                    visit(dep)
            visiting.pop()
            order.append(name)

        for name in sorted(self.tools):
            visit(name)
        return order

    async def _setup_tools(self) -> None:
        depth: dict[str, int] = {}
        for name in self._order:
            deps = [d for d in self.tools[name].deps.names if d in self.tools]
            depth[name] = 1 + max((depth[d] for d in deps), default=-1)
        for level in range(max(depth.values(), default=-1) + 1):
            async with anyio.create_task_group() as tg:
                for name in self._order:
                    if depth[name] == level:
                        tg.start_soon(self._setup_tool, self.tools[name])

    async def _setup_tool(self, record: ToolRecord) -> None:
        for dep in record.deps.required:
            other = self.tools.get(dep)
            if other is not None and other.status == FAILED and record.status == OK:
                record.fail(
                    ErrorInfo(
                        "DependencyError",
                        f"tool {record.name!r} needs tool {dep!r}, which failed: {other.error}",
                        self._rel(record.file),
                        None,
                    )
                )
        if record.status == FAILED or record.instance is None:
            return
        await self._call_tool_hook(record, "setup")

    async def _call_tool_hook(self, record: ToolRecord, hook: str) -> None:
        if record.instance is None or (record.status == FAILED and hook != "shutdown"):
            return
        try:
            with anyio.fail_after(self.hook_timeout):
                await getattr(record.instance, hook)()
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool's hook
            _log.exception("tool_hook_failed", tool=record.name, hook=hook)
            if hook in ("setup", "on_boot_complete"):
                record.fail(error_info(exc, prefer=record.file, root=self.root))

    def _find_asgi(self) -> ASGIApp | None:
        servers = [
            (r.name, app)
            for r in self.tools.values()
            if r.status == OK and r.instance is not None and (app := r.instance.asgi()) is not None
        ]
        if len(servers) > 1:
            names = ", ".join(n for n, _ in servers)
            raise ConfigurationError(f"more than one tool serves ASGI ({names}); keep one")
        return servers[0][1] if servers else None

    def tool(self, name: str) -> Tool:
        """A running tool by name (for tools and tests; plugins get theirs injected)."""
        record = self.tools.get(name)
        if record is None or record.instance is None or record.status != OK:
            state = "not registered" if record is None else f"failed: {record.error}"
            raise DependencyError(f"tool {name!r} is {state}")
        return record.instance

    @property
    def asgi_app(self) -> ASGIApp | None:
        return self._asgi

    # -- plugins -----------------------------------------------------------------

    async def load_file(self, path: Path) -> list[PluginRecord]:
        """Import a plugin file and boot every plugin class in it, committing each that boots."""
        records = await self.prepare_file(path)
        self.remember_failed([r for r in records if r.status == FAILED])
        self.commit([r for r in records if r.status == OK])
        return records

    async def prepare_file(
        self, path: Path, *, fresh: bool = False, leaving: Set[str] = frozenset()
    ) -> list[PluginRecord]:
        """Import a plugin file and boot its plugins under pending owners (not yet serving).

        Nothing is committed or remembered: the caller decides (boot commits what
        booted; hot reload swaps a whole batch or keeps the old version). A file
        that fails to import yields one failed record named ``<domain>.<file stem>``.
        ``leaving`` names identities that the caller is about to unload.
        """
        domain = domain_of(self.root, path)
        digest = file_digest(path)
        try:
            module = import_file(self.root, path, fresh=fresh)
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one plugin file
            record = PluginRecord(f"{domain}.{path.stem}", domain, path, None)
            record.fail(error_info(exc, prefer=path, root=self.root))
            record.digest = digest
            _log.error("plugin_import_failed", file=self._rel(path), error=str(record.error))
            return [record]
        classes = classes_in(module, Plugin)
        if not classes:
            _log.warning("plugin_file_without_plugin", file=self._rel(path))
        records: list[PluginRecord] = []
        try:
            for cls in classes:
                records.append(await self.prepare(cls, path, domain, leaving=leaving))
        except BaseException:  # cancelled: the classes booted so far never serve
            with anyio.CancelScope(shield=True):
                await self.release([r for r in records if r.status == OK])
            raise
        for record in records:
            record.digest = digest
        return records

    async def prepare(
        self, cls: type[Plugin], path: Path, domain: str, *, leaving: Set[str] = frozenset()
    ) -> PluginRecord:
        """Construct and boot one plugin under a pending owner; on failure release everything.

        A class whose name another file of the domain already serves under is refused,
        recorded as ``<domain>.<file stem>`` so that the failure shows next to the other.
        """
        identity = f"{domain}.{cls.__name__}"
        old = self.plugins.get(identity)
        serving = old if old is not None and old.status == OK else None
        taken = serving is not None and serving.file != path and identity not in leaving
        record = PluginRecord(f"{domain}.{path.stem}" if taken else identity, domain, path, cls)
        record.owner = Owner(
            record.identity, replaces=None if serving is None or taken else serving.owner
        )
        what = f"plugin {identity!r}"
        try:
            if serving is not None and taken:
                raise ConfigurationError(
                    f"{what} is already defined in {self._rel(serving.file)}; "
                    "plugin class names must be unique within a domain, rename one"
                )
            deps = _validate_plugin_class(cls, what)
            record.tools = deps.names
            available = {
                name: _binder(r.instance, record.owner)
                for name, r in self.tools.items()
                if r.status == OK and r.instance is not None
            }
            failed = {n: str(r.error) for n, r in self.tools.items() if r.status == FAILED}
            kwargs = resolve(deps, available, what=what, failed=failed)
            try:
                record.instance = cls(**kwargs)
                with anyio.fail_after(self.hook_timeout):
                    await record.instance.on_boot()
            except Exception as exc:  # re-raised, tagged as the plugin's own error
                raise _PluginCodeError(exc) from exc
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one plugin (incl. bind)
            if isinstance(exc, _PluginCodeError):  # raised by the plugin's own code
                info = error_info(exc.error, prefer=path, root=self.root)
            elif isinstance(exc, MicroCoreError):  # about the class's shape: point at its source
                info = ErrorInfo(type(exc).__name__, str(exc), str(path), _line_of(cls, exc))
            else:  # a tool's bind() failed for this plugin
                info = error_info(exc, prefer=path, root=self.root)
            record.fail(info)
            _log.error("plugin_failed", plugin=identity, error=str(record.error))
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.hook_timeout):
                await record.owner.release()
        except BaseException:  # cancelled mid-boot: what it registered so far must go
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.hook_timeout):
                await record.owner.release()
            raise
        return record

    def commit(self, new: Sequence[PluginRecord], old: Sequence[PluginRecord] = ()) -> None:
        """Swap plugins atomically: ``new`` start serving and ``old`` stop, with no await between.

        Release of the old owners' registrations is asynchronous; call
        :meth:`release` with ``old`` afterwards.
        """
        now = time.time()
        for record in old:
            record.owner.mark_released()
        self.forget(old)
        for record in new:
            if record.status != OK:
                raise RuntimeError(f"cannot commit failed plugin {record.identity!r}")
            record.owner.activate()
            record.loaded_at = now
            self.plugins[record.identity] = record
        self._notify_tools()

    def forget(self, records: Sequence[PluginRecord]) -> None:
        """Drop records (failed or unloaded) from :attr:`plugins`."""
        for record in records:
            if self.plugins.get(record.identity) is record:
                del self.plugins[record.identity]

    def remember_failed(self, records: Sequence[PluginRecord]) -> None:
        """Show failed records in status and health. One whose identity a working plugin
        holds (its class name is served from another file) shows as ``<domain>.<file stem>``."""
        for record in records:
            current = self.plugins.get(record.identity)
            if current is not None and current.status == OK:
                record.identity = f"{record.domain}.{record.file.stem}"
            self.plugins[record.identity] = record

    def add_reload_listener(self, listener: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``listener`` after every hot reload (e.g. to regenerate AI_CONTEXT.md)."""
        self._reload_listeners.append(listener)

    async def notify_reloaded(self) -> None:
        for listener in self._reload_listeners:
            try:
                result = listener()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - isolation boundary: one listener
                _log.exception("reload_listener_failed")

    def _notify_tools(self) -> None:
        for name in self._order:
            record = self.tools[name]
            if record.instance is not None and record.status == OK:
                try:
                    record.instance.on_plugins_changed()
                except Exception:  # noqa: BLE001 - isolation boundary: one tool's refresh
                    _log.exception("tool_refresh_failed", tool=name)

    async def release(self, records: Sequence[PluginRecord]) -> None:
        """Shut down old plugin instances and remove everything they registered.

        Each is shut down once the calls it was serving have finished (requests in
        flight on the old handlers), waiting at most ``MICROCORE_HOOK_TIMEOUT``.
        """
        for record in records:
            if record.owner.busy:
                with anyio.move_on_after(self.hook_timeout) as waited:
                    await record.owner.wait_idle()
                if waited.cancelled_caught:
                    _log.warning(
                        "plugin_shutdown_while_busy",
                        plugin=record.identity,
                        calls=record.owner.busy,
                        seconds=self.hook_timeout,
                    )
            if record.instance is not None and record.status == OK:
                try:
                    with anyio.fail_after(self.hook_timeout):
                        await record.instance.shutdown()
                except Exception:  # noqa: BLE001 - isolation boundary: one plugin's shutdown
                    _log.exception("plugin_shutdown_failed", plugin=record.identity)
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.hook_timeout):
                await record.owner.release()

    def retire(self, records: Sequence[PluginRecord]) -> None:
        """:meth:`release` swapped-out ``records`` in the background, so the caller does
        not wait for the calls they are still serving (shutdown waits for it)."""
        if not records:
            return
        self._retiring += 1
        self.start_background(self._retire, list(records), name="microcore-retire")

    async def _retire(self, records: list[PluginRecord]) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.release(records)
        finally:
            self._retiring -= 1
            if self._retiring == 0 and self._retired is not None:
                self._retired.set()
                self._retired = None

    async def unload(self, identity: str) -> None:
        """Stop a plugin: it stops serving at once, then shuts down and is released."""
        record = self.plugins.get(identity)
        if record is None:
            return
        if record.status == OK:
            self.commit([], [record])
            await self.release([record])
        else:
            self.forget([record])

    # -- introspection -----------------------------------------------------------

    def _rel(self, path: Path | str | None) -> str | None:
        """A path relative to the project root, as shown in status and logs."""
        return relative(self.root, path)

    def status(self) -> dict[str, Any]:
        """Every tool and plugin with status and error: the body of ``/system/status``."""
        return render_status(self)

    def failures(self) -> dict[str, list[str]]:
        """Names of failed tools and plugins (``/system/health``)."""
        return {
            "tools": sorted(n for n, r in self.tools.items() if r.status == FAILED),
            "plugins": sorted(n for n, r in self.plugins.items() if r.status == FAILED),
        }
