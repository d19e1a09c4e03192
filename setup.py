"""Build hook: the wheel carries the project bundle that ``microcore new`` copies.

Everything else about the package is in pyproject.toml. ``build_py`` copies the
example app (``app.py``, ``.env.example``, the standard ``tools/``, the
``products`` domain and its tests: ``microcore/_dev/bundle.py`` decides which
files) into ``microcore/_bundle/`` of the build, never into the source tree.
An editable install (``pip install -e .``) reads them from the checkout instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _bundle_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bundle", ROOT / "microcore/_dev/bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithBundle(build_py):
    """``build_py`` that also writes ``microcore/_bundle/`` into the build folder."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            bundle = _bundle_module()
            bundle.write_bundle(ROOT, Path(self.build_lib) / "microcore" / bundle.BUNDLE_DIR)


setup(cmdclass={"build_py": BuildWithBundle})
