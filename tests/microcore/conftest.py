"""Fixtures for kernel tests: a recording tool and a registry tool with owned items."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, cast

import pytest

from microcore._core.ownership import Owner
from microcore.testing import Kernel
from tests.conftest import ProjectFactory

RECORDER_TOOL = '''
from microcore import Tool


class RecorderTool(Tool):
    """Records lifecycle calls in order (kernel tests)."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def record(self, what):
        self.calls.append(what)

    async def setup(self):
        self.calls.append("recorder.setup")

    async def on_boot_complete(self):
        self.calls.append("recorder.on_boot_complete")

    async def drain(self):
        self.calls.append("recorder.drain")

    async def shutdown(self):
        self.calls.append("recorder.shutdown")
'''

REGISTRY_TOOL = '''
from microcore import Tool


class Handle:
    def __init__(self, tool, owner):
        self.tool, self.owner = tool, owner

    def add(self, item):
        self.tool.items.append((self.owner, item))
        self.owner.own("item", item, lambda: self.tool.items.remove((self.owner, item)))


class RegistryTool(Tool):
    """Plugins add items; only items of active owners are visible (kernel tests)."""

    name = "registry"

    def __init__(self, recorder):
        self.recorder = recorder
        self.items = []
        self.refreshes = 0

    def bind(self, owner):
        return Handle(self, owner)

    def visible(self):
        return sorted(item for owner, item in self.items if owner.active)

    def on_plugins_changed(self):
        self.refreshes += 1

    async def setup(self):
        self.recorder.record("registry.setup")

    async def shutdown(self):
        self.recorder.record("registry.shutdown")
'''


class Recorder(Protocol):
    """What a test reads from the RECORDER_TOOL: the lifecycle calls in order."""

    calls: list[str]


class Registry(Protocol):
    """What a test reads from the REGISTRY_TOOL: every item with its owner, and refreshes."""

    items: list[tuple[Owner, str]]
    refreshes: int

    def visible(self) -> list[str]: ...


def recorder_of(kernel: Kernel) -> Recorder:
    """The kernel's recorder tool, typed (tool classes of a test project are made at run time)."""
    return cast(Recorder, kernel.tool("recorder"))


def registry_of(kernel: Kernel) -> Registry:
    """The kernel's registry tool, typed (tool classes of a test project are made at run time)."""
    return cast(Registry, kernel.tool("registry"))


class KernelProjectFactory(Protocol):
    """The ``kernel_project`` fixture: a project with the recorder and registry tools."""

    def __call__(
        self, files: dict[str, str] | None = None, *, tools: list[str] | None = None
    ) -> Path: ...


@pytest.fixture
def kernel_project(make_project: ProjectFactory) -> KernelProjectFactory:
    """A project with the recorder and registry tools plus the given files."""

    def factory(files: dict[str, str] | None = None, *, tools: list[str] | None = None) -> Path:
        base = {
            "tools/recorder/recorder_tool.py": RECORDER_TOOL,
            "tools/registry/registry_tool.py": REGISTRY_TOOL,
        }
        base.update(files or {})
        return make_project(base, tools=tools if tools is not None else ["config", "logger"])

    return factory
