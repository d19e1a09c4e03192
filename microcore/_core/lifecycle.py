"""The plugin lifecycle in three verbs, shared by boot, hot reload and shutdown.

* :meth:`PluginSet.stage` imports plugin files and boots their classes under
  *pending* owners (registered, not serving), and notes what they replace.
* :meth:`PluginSet.commit` swaps a staged :class:`Batch` in, synchronously: the
  new versions serve and the replaced ones stop, with no await in between.
* :meth:`PluginSet.retire` shuts the replaced versions down and releases what
  they registered, once the calls they were serving have finished.

Boot stages and commits one file at a time; a hot reload stages a whole batch
of changed files and commits it at once; shutdown commits an empty batch that
unloads everything and waits for the retirement.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import anyio
import structlog

from .discovery import ErrorInfo, classes_in, domain_of, error_info, file_digest, import_file
from .errors import ConfigurationError, MicroCoreError
from .injection import Dependencies, dependencies_of, require_coroutine_function, resolve
from .ownership import Owner
from .plugin import Plugin
from .records import FAILED, OK, PluginRecord
from .status import relative
from .tool import Tool
from .toolset import ToolSet

__all__ = ("Batch", "PluginSet")

_log = structlog.get_logger("microcore")

Spawn = Callable[..., None]  # start_background(fn, *args, name=...)


class Batch:
    """One lifecycle step: versions staged (booted, not serving yet) and what they replace."""

    def __init__(self) -> None:
        self.new: list[PluginRecord] = []  # booted under pending owners
        self.old: list[PluginRecord] = []  # serving (or failed) versions this batch removes
        self.failed: list[PluginRecord] = []  # broken, with no working version to keep
        self.kept: dict[Path, ErrorInfo] = {}  # broken new version; the old one keeps serving
        self.settled: set[Path] = set()  # files whose earlier reload error this batch clears

    @property
    def loaded(self) -> list[str]:
        return sorted({r.identity for r in self.new})

    @property
    def unloaded(self) -> list[str]:
        return sorted({r.identity for r in self.old} - {r.identity for r in self.new})


class _PluginCodeError(Exception):
    """Wraps an exception raised by a plugin's own ``__init__`` or ``on_boot``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class PluginSet:
    """The plugins of one project by identity, and the files whose last reload failed."""

    def __init__(self, root: Path, tools: ToolSet, spawn: Spawn) -> None:
        self.root = root
        self.tools = tools
        self.records: dict[str, PluginRecord] = {}
        self.reload_errors: dict[Path, ErrorInfo] = {}  # file -> why its new version failed
        self._spawn = spawn
        self._retiring = 0  # background retirements in progress
        self._retired: anyio.Event | None = None

    # -- stage -------------------------------------------------------------------------

    async def stage(self, load: Iterable[Path] = (), unload: Iterable[Path] = ()) -> Batch:
        """Boot the current version of every file in ``load`` (pending, not serving) and note
        what it replaces; note every plugin of the files in ``unload`` as leaving.

        A file whose new version fails while its previous one serves keeps the previous
        one (``batch.kept``). Cancelled mid-way, nothing staged so far is left behind.
        """
        load, unload = [p.resolve() for p in load], [p.resolve() for p in unload]
        by_file: dict[Path, list[PluginRecord]] = {}
        for record in self.records.values():
            by_file.setdefault(record.file.resolve(), []).append(record)
        leaving = {r.identity for p in (*load, *unload) for r in by_file.get(p, [])}
        batch = Batch()
        try:
            for path in load:
                await self._stage_file(path, by_file.get(path, []), leaving, batch)
        except BaseException:  # cancelled (shutdown): the batch never serves
            with anyio.CancelScope(shield=True):
                await self.release(batch.new)
            raise
        for path in unload:
            batch.old.extend(by_file.get(path, []))
            batch.settled.add(path)
        return batch

    async def _stage_file(
        self, path: Path, previous: list[PluginRecord], leaving: set[str], batch: Batch
    ) -> None:
        records = await self._boot_file(path, leaving=leaving)
        broken = [r for r in records if r.status != OK]
        if broken and any(r.status == OK for r in previous):
            # keep the previous version serving; shut the half-booted new one down
            with anyio.CancelScope(shield=True):
                await self.release([r for r in records if r.status == OK])
            batch.kept[path] = broken[0].error or ErrorInfo("Error", "failed to load")
            return
        batch.settled.add(path)
        batch.new.extend(r for r in records if r.status == OK)
        batch.failed.extend(broken)
        batch.old.extend(previous)

    async def _boot_file(self, path: Path, *, leaving: set[str]) -> list[PluginRecord]:
        domain = domain_of(self.root, path)
        digest = file_digest(path)
        try:
            module = import_file(self.root, path, fresh=True)
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
                records.append(await self._boot(cls, path, domain, leaving))
        except BaseException:  # cancelled: the classes booted so far never serve
            with anyio.CancelScope(shield=True):
                await self.release([r for r in records if r.status == OK])
            raise
        for record in records:
            record.digest = digest
        return records

    async def _boot(
        self, cls: type[Plugin], path: Path, domain: str, leaving: set[str]
    ) -> PluginRecord:
        """Construct and boot one plugin under a pending owner; on failure release everything.

        A class whose name another file of the domain already serves under is refused,
        recorded as ``<domain>.<file stem>`` so that the failure shows next to the other.
        """
        identity = f"{domain}.{cls.__name__}"
        old = self.records.get(identity)
        serving = old if old is not None and old.status == OK else None
        taken = serving is not None and serving.file != path and identity not in leaving
        record = PluginRecord(_fallback(domain, path) if taken else identity, domain, path, cls)
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
            available = {name: _binder(tool, record.owner) for name, tool in self._tools()}
            kwargs = resolve(deps, available, what=what, failed=self.tools.failed())
            try:
                record.instance = cls(**kwargs)
                with anyio.fail_after(self.tools.hook_timeout):
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
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.tools.hook_timeout):
                await record.owner.release()
        except BaseException:  # cancelled mid-boot: what it registered so far must go
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.tools.hook_timeout):
                await record.owner.release()
            raise
        return record

    def _tools(self) -> Iterable[tuple[str, Tool]]:
        return ((record.name, tool) for record, tool in self.tools.running())

    # -- commit ------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """Swap ``batch`` in atomically: its new versions serve, the ones it replaces stop,
        its failures show in status. Follow with :meth:`retire`."""
        now = time.time()
        for record in batch.old:  # every one is the record serving (or failed) under its identity
            record.owner.mark_released()
            del self.records[record.identity]
        for record in batch.new:
            record.owner.activate()
            record.owner.replaces = None  # only pending owners need it; no chain of versions
            record.loaded_at = now
            self.records[record.identity] = record
        for record in batch.failed:
            current = self.records.get(record.identity)
            if current is not None and current.status == OK:
                record.identity = _fallback(record.domain, record.file)
            self.records[record.identity] = record
        for path in batch.settled:
            self.reload_errors.pop(path, None)
        self.reload_errors.update(batch.kept)
        self.tools.plugins_changed()

    # -- retire ------------------------------------------------------------------------

    def retire(self, batch: Batch) -> None:
        """Shut down the versions ``batch`` replaced, in the background, once the calls they
        serve have finished (:meth:`wait_retired` waits for every retirement)."""
        records = [r for r in batch.old if r.status == OK]
        if not records:
            return
        self._retiring += 1
        self._spawn(self._retire, records, name="microcore-retire")

    async def _retire(self, records: list[PluginRecord]) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.release(records)
        finally:
            self._retiring -= 1
            if self._retiring == 0 and self._retired is not None:
                self._retired.set()
                self._retired = None

    async def wait_retired(self) -> None:
        """Wait until every retirement in the background has finished."""
        while self._retiring:
            self._retired = self._retired or anyio.Event()
            await self._retired.wait()

    async def release(self, records: Iterable[PluginRecord]) -> None:
        """Shut plugin versions down and remove everything they registered.

        Each is shut down once the calls it was serving have finished (requests in
        flight on the old handlers), waiting at most ``MICROCORE_HOOK_TIMEOUT``.
        """
        timeout = self.tools.hook_timeout
        for record in records:
            if record.owner.busy:
                with anyio.move_on_after(timeout) as waited:
                    await record.owner.wait_idle()
                if waited.cancelled_caught:
                    _log.warning(
                        "plugin_shutdown_while_busy",
                        plugin=record.identity,
                        calls=record.owner.busy,
                        seconds=timeout,
                    )
            if record.instance is not None and record.status == OK:
                try:
                    with anyio.fail_after(timeout):
                        await record.instance.shutdown()
                except Exception:  # noqa: BLE001 - isolation boundary: one plugin's shutdown
                    _log.exception("plugin_shutdown_failed", plugin=record.identity)
            with anyio.CancelScope(shield=True), anyio.move_on_after(timeout):
                await record.owner.release()

    def failed(self) -> list[str]:
        return sorted(n for n, r in self.records.items() if r.status == FAILED)

    def _rel(self, path: Path | str | None) -> str | None:
        return relative(self.root, path)


def _fallback(domain: str, path: Path) -> str:
    """The identity a file's failure shows under when no class name can stand for it."""
    return f"{domain}.{path.stem}"


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


def _binder(tool: Tool, owner: Owner) -> Callable[[], object]:
    return lambda: tool.bind(owner)
