"""Scaffolding: ``microcore new`` (a runnable project) and ``microcore add plugin``.

Templates live in ``microcore/templates``; ``{{name}}`` placeholders are
replaced. ``new`` copies the example app (tools, the products domain, its
tests) from the microcore source folder this package runs from, and records
that folder in the project's ``pyproject.toml``, so its ``make`` installs this
very microcore (the ``microcore`` name on PyPI is another project).
"""

from __future__ import annotations

import keyword
import re
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path

from .._core.errors import ConfigurationError

__all__ = ("add_plugin", "new_project", "source_folder")

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
_PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_COPIED = ("app.py", ".env.example", ".gitignore", "tools/__init__.py", "domains/__init__.py")
_COPIED_TREES = ("domains/products", "tests/domains/products")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.db-*")


def render_template(relative: str, values: Mapping[str, str]) -> str:
    """The text of ``templates/<relative>`` with ``{{key}}`` replaced by ``values[key]``."""
    text = (TEMPLATES / relative).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# -- add plugin ---------------------------------------------------------------------


def _identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(value) or keyword.iskeyword(value):
        raise ConfigurationError(
            f"{what} {value!r} is not a valid name; use lowercase letters, digits and "
            "underscores, starting with a letter (e.g. 'orders', 'create_order')"
        )
    return value


def add_plugin(root: Path, domain: str, name: str) -> list[Path]:
    """Write ``domains/<domain>/plugins/<name>_plugin.py`` and its test; returns both paths.

    >>> add_plugin(Path("."), "orders", "create_order")   # class CreateOrderPlugin
    """
    domain = _identifier(domain, "domain")
    name = _identifier(name.removesuffix("_plugin"), "plugin name")
    plugin = root / "domains" / domain / "plugins" / f"{name}_plugin.py"
    test = root / "tests" / "domains" / domain / f"test_{name}_plugin.py"
    for path in (plugin, test):
        if path.exists():
            raise ConfigurationError(
                f"{path.relative_to(root)} already exists; pick another name or edit that file"
            )
    values = {
        "domain": domain,
        "name": name,
        "class_name": "".join(part.capitalize() for part in name.split("_")),
        "route": f"/{domain}/{name.replace('_', '-')}",
        "title": name.replace("_", " ").capitalize(),
    }
    for package in (root / "domains" / domain, root / "domains" / domain / "plugins"):
        if not (package / "__init__.py").exists():
            _write(package / "__init__.py", "")
    _write(plugin, render_template("plugin/plugin.py.tmpl", values))
    _write(test, render_template("plugin/test_plugin.py.tmpl", values))
    return [plugin, test]


# -- new project ----------------------------------------------------------------------


def source_folder(package_dir: Path | None = None) -> Path:
    """The microcore source folder (with ``tools/`` and the example domain) we run from."""
    package_dir = package_dir or Path(__file__).resolve().parents[1]
    root = package_dir.parent
    try:
        name = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"][
            "name"
        ]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        name = None
    if (
        name != "microcore"
        or not (root / "tools").is_dir()
        or not (root / "domains" / "products").is_dir()
    ):
        raise ConfigurationError(
            f"microcore new copies the example app from a microcore source folder, but this "
            f"microcore runs from {package_dir} without one; run it from a microcore checkout "
            "(pip install -e /path/to/microcore)"
        )
    return root


def _project_name(target: Path) -> str:
    name = target.name
    if not _PROJECT_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} cannot be a project name; name the folder with letters, digits, "
            "'-', '_' or '.', e.g. 'shop-api'"
        )
    return name


def new_project(target: Path, *, source: Path | None = None) -> Path:
    """Create a runnable project in ``target`` (absent or empty) from the example app."""
    target = target.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigurationError(f"{target} already exists and is not empty; pick a new folder")
    name = _project_name(target)
    source = source or source_folder()
    target.mkdir(parents=True, exist_ok=True)
    for rel in _COPIED:
        if (source / rel).is_file():
            _write(target / rel, (source / rel).read_text(encoding="utf-8"))
    for tool in sorted((source / "tools").iterdir()):
        if (tool / f"{tool.name}_tool.py").is_file():
            shutil.copytree(tool, target / "tools" / tool.name, ignore=_IGNORED)
    for rel in _COPIED_TREES:
        if (source / rel).is_dir():
            shutil.copytree(source / rel, target / rel, ignore=_IGNORED)
    values = {
        "name": name,
        "microcore_path": str(source),
        "microcore_url": source.as_uri(),
    }
    for rel in ("Makefile", "README.md", "pyproject.toml", "tests/test_products_api.py"):
        _write(target / rel, render_template(f"project/{rel}.tmpl", values))
    return target
