"""Hot reload: apply changed plugin files to the running kernel, atomically, in-process.

A batch of file changes becomes: plugin files to (re)load, plugin files to
unload, and domain helper modules (``models.py``...) whose dependent plugins
must reload. New versions boot under pending owners that replace the old
ones; then one synchronous ``commit`` swaps the whole batch, and the old
versions are shut down and released afterwards (in-flight requests finish on
the old code). A file whose new version fails to import or boot keeps its old
version serving, and the error stays in ``/system/status`` until it is fixed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

import anyio
import structlog

from .._core.discovery import ErrorInfo, file_digest, module_name
from .._core.kernel import Kernel
from .._core.status import relative
from .._core.tool import FilesApplied
from .scan import scan_file

__all__ = ("ReloadReport", "Reloader", "restart_reason")

_log = structlog.get_logger("microcore")

_WATCHED_SUFFIXES = (".py", ".sql")
_UNKNOWN = ErrorInfo("Error", "failed to load")


class ReloadReport:
    """What one batch did (returned by :meth:`Reloader.apply`, logged, shown in status)."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.unloaded: list[str] = []
        self.failed: dict[str, ErrorInfo] = {}
        self.restart_needed: list[str] = []  # relative paths
        self.restart_reasons: dict[str, str] = {}  # relative path -> why
        self.applied: list[str] = []  # other project files tools took in (migrations)
        self.ms = 0.0


class Reloader:
    """Watches a project and reloads what changed into the running kernel.

    >>> reloader = Reloader(kernel)
    >>> await reloader.apply([Path("domains/products/plugins/create_product_plugin.py")])
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.root = kernel.root
        self._lock = anyio.Lock()
        self._stop = anyio.Event()
        self._applying = anyio.CancelScope()  # cancels a reload in progress (shutdown)
        self._closed = False
        kernel.add_reload_listener(self.write_context)

    # -- watching ----------------------------------------------------------------

    def watch_paths(self) -> list[Path]:
        candidates = [
            self.root / "domains",
            self.root / "tools",
            self.root / "app.py",
            self.root / ".env",
            self.root / "microcore",
        ]
        return [p for p in candidates if p.exists()]

    async def watch(self, *, debounce_ms: int = 50, step_ms: int = 2) -> None:
        """Apply changes as they happen, until cancelled.

        watchfiles yields a batch once ``step_ms`` passes with no new change, checking every
        ``step_ms``: 2 ms put a save's p50 write-to-new-response at ~20 ms in
        ``bench/bench_reload.py --soak`` (27 ms with 5 ms) for ~2 % of a core while idle.
        """
        import watchfiles

        _log.info("reload_watching", paths=[self._rel(p) for p in self.watch_paths()])
        async for changes in watchfiles.awatch(
            *self.watch_paths(),
            debounce=debounce_ms,
            step=step_ms,
            recursive=True,
            watch_filter=watchfiles.DefaultFilter(),
            stop_event=self._stop,
        ):
            with self._applying:
                await self.apply(Path(path) for _, path in changes)
            if self._applying.cancel_called:
                return

    async def close(self) -> None:
        """Stop watching, cut short a reload in progress (what it booted is shut down and
        released, nothing is committed) and wait until it has let go: the kernel can shut
        down knowing no reload will commit after it."""
        self._closed = True
        self._stop.set()  # the watcher thread checks this every step
        self._applying.cancel()
        with anyio.CancelScope(shield=True):
            async with self._lock:
                pass

    async def write_context(self) -> None:
        """Regenerate AI_CONTEXT.md from the reloaded system (only when its text changed).

        Generating it holds the event loop for a while: this reload listener, added when
        the reloader is made (after the tools set up), runs after theirs, which let what
        the swap cut short finish first (the http tool: the goodbyes of the streams it
        closed)."""
        from .manifest import CONTEXT_FILE, describe, render

        path = self.root / CONTEXT_FILE
        text = render(describe(self.kernel))
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            _log.info("context_written", file=CONTEXT_FILE, tokens=len(text) // 4)

    # -- applying ----------------------------------------------------------------

    async def apply(self, paths: Iterable[Path]) -> ReloadReport:
        """Reload what ``paths`` (changed, added or deleted files) affect, as one swap."""
        async with self._lock:
            started = time.perf_counter()
            report = ReloadReport()
            if self._closed:
                return report
            load, unload, helpers, others = self._classify(paths, report)
            applied = await self._offer_to_tools(sorted(others)) if others else FilesApplied()
            if helpers:
                load |= self._dependents(helpers)
            load |= self._plugin_files(applied.reload_domains)
            if load or unload or applied.applied or applied.failed:
                batch = await self.kernel.stage(sorted(load), sorted(unload))
                batch.settled.update(applied.applied)
                batch.kept.update(
                    (p, ErrorInfo("ReloadError", why, str(p))) for p, why in applied.failed.items()
                )
                self.kernel.commit(batch)
                self.kernel.retire(batch)  # old versions finish their calls, then shut down
                report.loaded, report.unloaded = batch.loaded, batch.unloaded
                report.failed = {r.identity: r.error or _UNKNOWN for r in batch.failed}
                report.failed.update((self._rel(p), e) for p, e in batch.kept.items())
                report.applied = sorted(self._rel(p) for p in applied.applied)
            report.ms = round((time.perf_counter() - started) * 1000, 2)
            if report.loaded or report.unloaded or report.failed or report.applied:
                _log.info(
                    "reloaded",
                    applied=report.applied or None,
                    loaded=report.loaded,
                    unloaded=report.unloaded,
                    failed=sorted(report.failed),
                    ms=report.ms,
                )
                await self.kernel.notify_reloaded(report.ms)
            for rel in report.restart_needed:
                _log.warning(
                    "restart_required",
                    file=rel,
                    reason=report.restart_reasons[rel],
                    hint="restart the server to apply it (microcore dev restarts it for you)",
                )
            return report

    def _classify(
        self, paths: Iterable[Path], report: ReloadReport
    ) -> tuple[set[Path], set[Path], set[str], set[Path]]:
        load: set[Path] = set()
        unload: set[Path] = set()
        helpers: set[str] = set()
        others: set[Path] = set()  # other files of a domain (migrations): offered to the tools
        loaded = {r.file.resolve(): r.digest for r in self.kernel.plugins.values()}
        for raw in paths:
            path = (raw if raw.is_absolute() else self.root / raw).resolve()
            try:
                parts = path.relative_to(self.root).parts
            except ValueError:
                continue
            if path.suffix not in _WATCHED_SUFFIXES and parts[0] not in (".env", "domains"):
                continue  # any file of a domain may be a tool's (a sidecar's program)
            reason = restart_reason(parts)
            if reason is not None:
                rel = "/".join(parts)
                report.restart_needed.append(rel)
                report.restart_reasons[rel] = reason
            elif parts[0] != "domains" or len(parts) < 3:
                continue  # not the reloader's business
            elif path.suffix != ".py":  # migrations, other languages' plugins: the tools'
                others.add(path)
            elif _is_plugin_file(parts):
                if not path.exists():
                    unload.add(path)
                elif path.stat().st_size == 0:
                    continue  # an editor truncated the file and is still writing it
                elif loaded.get(path) != file_digest(path) or path in self.kernel.reload_errors:
                    load.add(path)
            else:
                helpers.add(module_name(self.root, path))
        return load, unload, helpers, others

    async def _offer_to_tools(self, paths: list[Path]) -> FilesApplied:
        """Hand changed non-Python domain files (migrations) to every working tool; merge
        what they applied, refused and want reloaded. A file no tool takes is ignored."""
        applied: list[Path] = []
        failed: dict[Path, str] = {}
        domains: set[str] = set()
        for record in self.kernel.tools.values():
            if record.status != "ok" or record.instance is None:
                continue
            try:
                answer = await record.instance.files_changed(paths)
            except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool's hook
                _log.exception("reload_tool_failed", tool=record.name)
                failed.update((p, f"tool {record.name!r} failed: {exc}") for p in paths)
                continue
            applied += answer.applied
            failed.update(answer.failed)
            domains.update(answer.reload_domains)
        return FilesApplied(applied=tuple(applied), failed=failed, reload_domains=tuple(domains))

    def _plugin_files(self, domains: Iterable[str]) -> set[Path]:
        return {
            path.resolve()
            for domain in domains
            for path in (self.root / "domains" / domain / "plugins").glob("*_plugin.py")
        }

    def _dependents(self, changed: set[str]) -> set[Path]:
        """Plugin files whose imports reach a changed helper module; stale modules purged."""
        graph: dict[str, set[str]] = {}
        files: dict[str, Path] = {}
        for path in sorted((self.root / "domains").rglob("*.py")):
            name = module_name(self.root, path)
            files[name] = path
            graph[name] = _imports_of(self.root, path)
        affected = set(changed)
        grew = True
        while grew:  # reverse closure: everything that imports something affected
            grew = False
            for name, imports in graph.items():
                if name not in affected and imports & affected:
                    affected.add(name)
                    grew = True
        for name in affected:
            sys.modules.pop(name, None)
        return {
            files[name].resolve()
            for name in affected
            if name in files and _is_plugin_file(files[name].relative_to(self.root).parts)
        }

    def _rel(self, path: Path) -> str:
        return relative(self.root, path) or str(path)


def restart_reason(parts: tuple[str, ...]) -> str | None:
    """Why a change to the project file at ``parts`` (relative path parts) needs a
    restart, or None when it reloads in-process (plugins, domain helpers, migrations)
    or is not the framework's business."""
    if not parts:
        return None
    if parts[0] in ("tools", "microcore"):
        return "tools and the kernel load once per process"
    if parts in (("app.py",), (".env",)):
        return "app.py and .env are read at start"
    return None


def _is_plugin_file(parts: tuple[str, ...]) -> bool:
    return (
        len(parts) == 4
        and parts[0] == "domains"
        and parts[2] == "plugins"
        and parts[3].endswith("_plugin.py")
    )


def _imports_of(root: Path, path: Path) -> set[str]:
    """Project domain modules a file imports (absolute and relative), by dotted name."""
    found: set[str] = set()
    for imported in scan_file(root, path).imports:  # "from a.b import c" reads "a.b.c"
        found.update((imported.module, imported.module.rpartition(".")[0]))
    return {m for m in found if m.startswith("domains.")}
