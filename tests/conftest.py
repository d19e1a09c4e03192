"""Shared fixtures: throwaway projects that reuse this repository's tools."""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import pytest

from microcore._core import logs as _logging
from tests.support import CHROMIUM, CHROMIUM_ARGS, require_browser

if TYPE_CHECKING:  # optional at run time: the browser tests skip without it
    from playwright.sync_api import Browser

REPO = Path(__file__).resolve().parents[1]


class ProjectFactory(Protocol):
    """The ``make_project`` fixture: write the files, copy the tools, return the root."""

    def __call__(self, files: dict[str, str], *, tools: list[str] | None = None) -> Path: ...


_COLLECTED: dict[
    str, ModuleType
] = {}  # this repository's tools modules, as test modules imported them


def _tools_modules() -> dict[str, ModuleType]:
    """The ``tools`` modules, and the ``domains`` ones (a domain module that imported tool
    types, ``UploadFile`` say, must not outlive the ``tools`` copy it imported them from)."""
    return {n: m for n, m in sys.modules.items() if n.partition(".")[0] in ("tools", "domains")}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember the repository's ``tools`` modules the test modules imported."""
    _COLLECTED.update(_tools_modules())


@pytest.fixture(autouse=True)
def _collected_tools() -> None:
    """Each test starts with the ``tools`` modules its test module imported: a project that an
    earlier test booted swaps the ``tools`` package in ``sys.modules`` for its own copy, and a
    tool built directly from the imported classes would then import its lazy modules (the NATS
    backend) from the wrong copy, or fail to find its package."""
    for name in _tools_modules().keys() - _COLLECTED.keys():
        del sys.modules[name]
    sys.modules.update(_COLLECTED)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Every test starts with unconfigured logging, as a fresh process would."""
    yield
    _logging.reset()


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Write a project: ``make_project({"domains/a/plugins/x_plugin.py": "..."}, tools=[...])``.

    ``tools`` names tool folders copied from this repository (default: all of them).
    File contents are dedented.
    """

    def factory(files: dict[str, str], *, tools: list[str] | None = None) -> Path:
        root = tmp_path / "project"
        root.mkdir(exist_ok=True)
        names = (
            tools
            if tools is not None
            else [p.name for p in (REPO / "tools").iterdir() if (p / f"{p.name}_tool.py").is_file()]
        )
        (root / "tools").mkdir(exist_ok=True)
        for name in names:
            shutil.copytree(
                REPO / "tools" / name,
                root / "tools" / name,
                ignore=shutil.ignore_patterns("__pycache__"),
                dirs_exist_ok=True,
            )
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return root

    return factory


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless system Chromium (Debian's, driven by Playwright), closed after the test;
    skipped without it locally, failed under ``CI=true``."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()
