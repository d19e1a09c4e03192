"""The bundle: what ``microcore new`` copies into a project, and where it comes from.

A project starts as a copy of the example app: ``app.py``, ``.env.example``,
``.gitignore``, the standard tools (``tools/``), the example domain
(``domains/products``) and its tests. An installed wheel carries that copy in
``microcore/_bundle/`` (written at build time by ``setup.py``, which loads this
module by file path, so it imports nothing outside the standard library); a
checkout installed with ``pip install -e`` reads the same files from the
repository itself.

>>> sorted(bundle_files(bundle_root()))[:2]
['.env.example', '.gitignore']
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tomllib
from pathlib import Path

__all__ = (
    "BUNDLE_DIR",
    "BundleError",
    "bundle_files",
    "bundle_root",
    "digest",
    "is_tool_file",
    "requirement",
    "write_bundle",
)

BUNDLE_DIR = "_bundle"  # inside the installed microcore package

_FILES = ("app.py", ".env.example", ".gitignore", "tools/__init__.py", "domains/__init__.py")
_TREES = ("domains/products", "tests/domains/products")
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".db", ".db-wal", ".db-shm")


class BundleError(Exception):
    """No bundle to copy from (an installed microcore without one, and no checkout)."""


def _wanted(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    return (
        path.is_file()
        and not _SKIPPED_DIRS.intersection(rel.parts)
        and not path.name.endswith(_SKIPPED_SUFFIXES)
    )


def _tree(root: Path, rel: str) -> list[str]:
    base = root / rel
    if not base.is_dir():
        return []
    return [p.relative_to(root).as_posix() for p in sorted(base.rglob("*")) if _wanted(p, root)]


def bundle_files(root: Path) -> list[str]:
    """The relative paths (posix) of every file to copy from ``root``, sorted.

    ``root`` is a checkout or an installed bundle; a tool is a ``tools/<name>/``
    folder holding ``<name>_tool.py``. Caches and databases are never copied.
    """
    files = [rel for rel in _FILES if (root / rel).is_file()]
    tools = root / "tools"
    if tools.is_dir():
        for tool in sorted(tools.iterdir()):
            if (tool / f"{tool.name}_tool.py").is_file():
                files += _tree(root, f"tools/{tool.name}")
    for rel in _TREES:
        files += _tree(root, rel)
    return sorted(files)


def is_tool_file(rel: str) -> bool:
    """True for the standard tools' files (``tools/...``), which upgrades manage."""
    return rel.startswith("tools/")


def digest(data: bytes) -> str:
    """The content hash recorded in the tools lock file."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_bundle(source: Path, dest: Path) -> list[str]:
    """Copy ``bundle_files(source)`` into ``dest`` (emptied first); returns what was copied."""
    if dest.exists():
        shutil.rmtree(dest)
    files = bundle_files(source)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, dest / rel)
    return files


def requirement(version: str) -> str:
    """The dependency a project made by microcore ``version`` declares: that version up to
    the next one that may break it (semantic versioning: the next minor while 0.x, else the
    next major), e.g. ``microcore>=0.2.0,<0.3``."""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is None:
        raise BundleError(f"microcore version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor = int(found[1]), int(found[2])
    upper = f"0.{minor + 1}" if major == 0 else str(major + 1)
    return f"microcore>={version},<{upper}"


def _is_checkout(root: Path) -> bool:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        name = project["project"]["name"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return False
    return bool(name == "microcore" and (root / "tools").is_dir())


def bundle_root(package_dir: Path | None = None) -> Path:
    """Where the bundle is: ``microcore/_bundle`` in a wheel, else the checkout's root."""
    package_dir = package_dir or Path(__file__).resolve().parents[1]
    installed = package_dir / BUNDLE_DIR
    if (installed / "tools").is_dir():
        return installed
    if _is_checkout(package_dir.parent):
        return package_dir.parent
    raise BundleError(
        f"this microcore ({package_dir}) carries no project bundle (microcore/{BUNDLE_DIR}) "
        "and is not a checkout; reinstall it from a wheel (pip install microcore) or a "
        "checkout (pip install -e /path/to/microcore)"
    )
