"""Scaffolding: ``microcore new`` (a runnable project) and ``microcore add plugin``.

Templates live in ``microcore/templates``; ``{{name}}`` placeholders are
replaced. ``new`` copies the bundle (``bundle.py``: the example app, the
standard tools, the products domain and its tests) that this microcore carries,
records the tools in ``tools.lock.json`` (``microcore tools upgrade`` reads it)
and makes the project depend on ``microcore`` by name and version range.
"""

from __future__ import annotations

import keyword
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from .. import __version__
from .._core.errors import ConfigurationError
from .bundle import bundle_files, bundle_root, requirement
from .upgrade import lock_files, write_lock

__all__ = ("add_plugin", "new_project")

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
_PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


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


def _project_name(target: Path) -> str:
    name = target.name
    if not _PROJECT_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} cannot be a project name; name the folder with letters, digits, "
            "'-', '_' or '.', e.g. 'shop-api'"
        )
    return name


def new_project(target: Path, *, source: Path | None = None, version: str = __version__) -> Path:
    """Create a runnable project in ``target`` (absent or empty) from the example app.

    ``source`` is the bundle to copy (default: the one this microcore carries);
    ``tools.lock.json`` records the standard tools as shipped by ``version``.
    """
    target = target.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigurationError(f"{target} already exists and is not empty; pick a new folder")
    name = _project_name(target)
    source = source or bundle_root()
    files = bundle_files(source)
    target.mkdir(parents=True, exist_ok=True)
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target / rel)
    write_lock(target, version, lock_files(source, files))
    values = {"name": name, "requirement": requirement(version), "version": version}
    for rel in ("Makefile", "README.md", "pyproject.toml"):
        _write(target / rel, render_template(f"project/{rel}.tmpl", values))
    return target
