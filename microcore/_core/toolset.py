"""The tools of one project: discovered, constructed by injection, set up in dependency layers.

Tools are the kernel's fixed part: they load once per process. Each runs its
hooks within ``MICROCORE_HOOK_TIMEOUT``; a tool that fails is marked failed and
the rest go on (plugins that need it fail with an error naming it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import structlog

from .discovery import ErrorInfo, classes_in, error_info, find_tool_files, import_file
from .errors import ConfigurationError, DependencyError
from .injection import dependencies_of, require_coroutine_function, resolve
from .records import FAILED, OK, ToolRecord
from .status import relative
from .tool import ASGIApp, Tool

__all__ = ("ToolSet",)

_log = structlog.get_logger("microcore")

_HOOKS = ("setup", "on_boot_complete", "drain", "shutdown", "files_changed", "probe")


class ToolSet:
    """The project's tools by name, in set-up order (every dependency before its dependents)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: dict[str, ToolRecord] = {}
        self.order: list[str] = []
        self.hook_timeout = 30.0

    def running(self) -> Iterator[tuple[ToolRecord, Tool]]:
        """Working tools in set-up order, each with its instance."""
        for name in self.order:
            record = self.records[name]
            if record.status == OK and record.instance is not None:
                yield record, record.instance

    def get(self, name: str) -> Tool:
        """A running tool by name."""
        record = self.records.get(name)
        if record is None or record.instance is None or record.status != OK:
            state = "not registered" if record is None else f"failed: {record.error}"
            raise DependencyError(f"tool {name!r} is {state}")
        return record.instance

    def failed(self) -> dict[str, str]:
        """Failed tools' names and errors (for a plugin that asks for one of them)."""
        return {n: str(r.error) for n, r in self.records.items() if r.status == FAILED}

    # -- loading -------------------------------------------------------------------

    async def load(self, kernel: object) -> None:
        """Discover, construct (``kernel`` is what a tool's ``kernel`` parameter receives)
        and set up every tool; independent tools set up concurrently."""
        self._discover()
        self._construct(kernel)
        depth: dict[str, int] = {}
        for name in self.order:
            deps = [d for d in self.records[name].deps.names if d in self.records]
            depth[name] = 1 + max((depth[d] for d in deps), default=-1)
        for level in range(max(depth.values(), default=-1) + 1):
            async with anyio.create_task_group() as tg:
                for name in self.order:
                    if depth[name] == level:
                        tg.start_soon(self._setup, self.records[name])

    def _discover(self) -> None:
        self.records.clear()
        for path in find_tool_files(self.root):
            try:
                module = import_file(self.root, path)
            except Exception as exc:  # noqa: BLE001 - isolation boundary: one broken tool file
                record = ToolRecord(path.parent.name, path)
                record.fail(error_info(exc, prefer=path, root=self.root))
                _log.error("tool_import_failed", file=self._rel(path), error=str(record.error))
                self._add(record)
                continue
            for cls in classes_in(module, Tool):
                if not cls.name:
                    raise ConfigurationError(
                        f"tool class {cls.__name__} in {self._rel(path)} has no name; "
                        'set a class attribute, e.g. name = "cache"'
                    )
                self._add(ToolRecord(cls.name, path, cls))

    def _add(self, record: ToolRecord) -> None:
        other = self.records.get(record.name)
        if other is not None:
            raise ConfigurationError(
                f"two tools are named {record.name!r}: {self._rel(other.file)} and "
                f"{self._rel(record.file)}; rename one (tool names must be unique)"
            )
        self.records[record.name] = record

    def _construct(self, kernel: object) -> None:
        for record in self.records.values():
            if record.cls is None:
                continue
            try:
                record.deps = dependencies_of(record.cls, what=f"tool {record.name!r}")
                for hook in _HOOKS:
                    require_coroutine_function(
                        getattr(record.cls, hook), what=f"tool {record.name!r}: {hook}"
                    )
            except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool
                record.fail(error_info(exc, prefer=record.file, root=self.root))
        self.order = self._setup_order()
        for name in self.order:
            record = self.records[name]
            if record.status == FAILED or record.cls is None:
                continue
            available: dict[str, Callable[[], Any]] = {"kernel": lambda: kernel}
            for dep, other in self.records.items():
                if other.status == OK and other.instance is not None:
                    available[dep] = _constant(other.instance)
            try:
                kwargs = resolve(
                    record.deps, available, what=f"tool {name!r}", failed=self.failed()
                )
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
            for dep in self.records[name].deps.names:
                if dep in self.records:
                    visit(dep)
            visiting.pop()
            order.append(name)

        for name in sorted(self.records):
            visit(name)
        return order

    async def _setup(self, record: ToolRecord) -> None:
        for dep in record.deps.required:
            other = self.records.get(dep)
            if other is not None and other.status == FAILED and record.status == OK:
                record.fail(
                    ErrorInfo(
                        "DependencyError",
                        f"tool {record.name!r} needs tool {dep!r}, which failed: {other.error}",
                        self._rel(record.file),
                        None,
                    )
                )
        await self.call(record, "setup")

    # -- hooks -----------------------------------------------------------------------

    async def call(self, record: ToolRecord, hook: str) -> None:
        """Run one tool's hook within the hook timeout; a failed setup marks the tool failed."""
        if record.instance is None or (record.status == FAILED and hook != "shutdown"):
            return
        try:
            with anyio.fail_after(self.hook_timeout):
                await getattr(record.instance, hook)()
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool's hook
            _log.exception("tool_hook_failed", tool=record.name, hook=hook)
            if hook in ("setup", "on_boot_complete"):
                record.fail(error_info(exc, prefer=record.file, root=self.root))

    async def call_all(self, hook: str, *, reverse: bool = False) -> None:
        """Run ``hook`` on every tool, in set-up order or its reverse."""
        for name in reversed(self.order) if reverse else self.order:
            await self.call(self.records[name], hook)

    def plugins_changed(self) -> None:
        """Tell every working tool, synchronously, that the serving plugins changed."""
        for record, tool in self.running():
            try:
                tool.on_plugins_changed()
            except Exception:  # noqa: BLE001 - isolation boundary: one tool's refresh
                _log.exception("tool_refresh_failed", tool=record.name)

    def asgi(self) -> ASGIApp | None:
        """The one ASGI app a tool serves, if any (two is a configuration error)."""
        servers = [(r.name, app) for r, tool in self.running() if (app := tool.asgi()) is not None]
        if len(servers) > 1:
            names = ", ".join(n for n, _ in servers)
            raise ConfigurationError(f"more than one tool serves ASGI ({names}); keep one")
        return servers[0][1] if servers else None

    def _rel(self, path: Path | str | None) -> str | None:
        return relative(self.root, path)


def _constant(value: object) -> Callable[[], object]:
    return lambda: value
