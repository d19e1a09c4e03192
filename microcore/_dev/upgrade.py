"""``microcore tools upgrade``: bring the installed microcore's standard tools into a project.

The standard tools are vendored: ``microcore new`` copies them into the
project's ``tools/`` (the project owns them, ``from tools.http import Http``
resolves like any local package) and records each file's hash as shipped, with
the microcore version, in ``tools.lock.json``. An upgrade compares three
things per file: that baseline, the project's file, and the installed
microcore's file.

- unchanged here (hash = baseline): replaced by the new version (``updated``),
  or deleted if microcore no longer ships it (``removed``);
- new in microcore: written (``added``);
- edited here, and microcore did not change it: left alone (``kept``);
- edited here, and microcore changed it too: never overwritten. The new
  version is written beside it as ``<file>.new`` and the difference is shown
  (``conflict``); merge by hand, then delete the ``.new`` file;
- deleted here: stays deleted (``skipped``);
- the project's own tools (folders microcore never shipped): untouched.

Afterwards ``tools.lock.json`` records the new version's hashes, so an edited
file stays "edited" against the version it was merged with.
"""

from __future__ import annotations

import difflib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._core.errors import ConfigurationError
from .bundle import bundle_files, digest, is_tool_file, requirement

__all__ = ("LOCK_FILE", "Change", "Upgrade", "lock_files", "read_lock", "upgrade_tools")

LOCK_FILE = "tools.lock.json"
NEW_SUFFIX = ".new"
_DIFF_LINES = 40
_LOCK_NOTE = (
    "Written by microcore (new, tools upgrade): the standard tools' files as shipped by that "
    "version. 'microcore tools upgrade' compares against it; do not edit it by hand."
)


@dataclass(frozen=True)
class Lock:
    """The baseline: the microcore version the tools came from and each file's hash."""

    version: str
    files: dict[str, str]


@dataclass(frozen=True)
class Change:
    """What the upgrade does (or, with ``--dry-run``, would do) to one path."""

    action: str  # added, updated, removed, kept, conflict, skipped, yours
    path: str
    note: str = ""
    diff: tuple[str, ...] = ()


@dataclass(frozen=True)
class Upgrade:
    """The outcome: the versions, the changes and whether files were written."""

    old_version: str | None
    new_version: str
    changes: list[Change] = field(default_factory=list)
    dry_run: bool = False

    @property
    def conflicts(self) -> list[Change]:
        return [change for change in self.changes if change.action == "conflict"]


def lock_files(source: Path, files: list[str]) -> dict[str, str]:
    """The hashes of ``files`` (relative to ``source``) that upgrades manage."""
    return {rel: digest((source / rel).read_bytes()) for rel in files if is_tool_file(rel)}


def write_lock(root: Path, version: str, files: Mapping[str, str]) -> None:
    """Write ``tools.lock.json`` for ``version``, listing ``files`` sorted."""
    data = {"note": _LOCK_NOTE, "microcore": version, "files": dict(sorted(files.items()))}
    (root / LOCK_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_lock(root: Path) -> Lock | None:
    """The project's baseline, or ``None`` when it has none (made before 0.2.0)."""
    path = root / LOCK_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        lock = Lock(version=str(data["microcore"]), files=dict(data["files"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{LOCK_FILE} cannot be read ({type(exc).__name__}: {exc}); restore it from version "
            f"control, or delete it to treat every standard tool file that differs as edited"
        ) from exc
    return lock


def _local_digest(path: Path) -> str | None:
    return digest(path.read_bytes()) if path.is_file() else None


def _diff(rel: str, mine: Path, theirs: Path, version: str) -> tuple[str, ...]:
    lines = list(
        difflib.unified_diff(
            mine.read_text(encoding="utf-8", errors="replace").splitlines(),
            theirs.read_text(encoding="utf-8", errors="replace").splitlines(),
            f"{rel} (yours)",
            f"{rel}{NEW_SUFFIX} (microcore {version})",
            lineterm="",
        )
    )
    if len(lines) > _DIFF_LINES:
        rest = len(lines) - _DIFF_LINES
        lines = [*lines[:_DIFF_LINES], f"... {rest} more lines: diff {rel} {rel}{NEW_SUFFIX}"]
    return tuple(lines)


def _plan(
    root: Path, source: Path, version: str, lock: Lock | None
) -> tuple[list[Change], dict[str, str]]:
    shipped = lock_files(source, bundle_files(source))
    base = lock.files if lock else {}
    changes: list[Change] = []
    recorded: dict[str, str] = {}
    for rel in sorted(set(shipped) | set(base)):
        new, old, mine = shipped.get(rel), base.get(rel), _local_digest(root / rel)
        if new is None:  # microcore no longer ships it
            if mine is not None and mine == old:
                changes.append(Change("removed", rel, f"no longer shipped by microcore {version}"))
            elif mine is not None:
                changes.append(Change("kept", rel, "edited here and no longer shipped: now yours"))
            continue
        recorded[rel] = new
        if mine is None:
            if old is None:
                changes.append(Change("added", rel))
            else:
                changes.append(Change("skipped", rel, "deleted here; stays deleted"))
        elif mine == new:
            continue
        elif mine == old:
            changes.append(Change("updated", rel))
        elif old == new:
            note = f"edited here; microcore {version} did not change it"
            changes.append(Change("kept", rel, note))
        else:
            why = "edited here and changed" if old else "differs from the file shipped"
            note = f"{why} in microcore {version}: its version is written beside it as "
            diff = _diff(rel, root / rel, source / rel, version)
            changes.append(Change("conflict", rel, note + f"{rel}{NEW_SUFFIX}", diff))
    owned = {rel.split("/")[1] for rel in (*shipped, *base) if rel.count("/") >= 2}
    tools = root / "tools"
    for folder in sorted(tools.iterdir()) if tools.is_dir() else []:
        if folder.is_dir() and folder.name not in owned and folder.name != "__pycache__":
            changes.append(Change("yours", f"tools/{folder.name}/", "your own tool: untouched"))
    return changes, recorded


def _apply(root: Path, source: Path, changes: list[Change]) -> None:
    for change in changes:
        target = root / change.path
        if change.action in ("added", "updated", "conflict"):
            if change.action == "conflict":
                target = target.with_name(target.name + NEW_SUFFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / change.path, target)
        elif change.action == "removed":
            target.unlink()
            folder = target.parent
            while folder not in (root, root / "tools") and not any(
                p.name != "__pycache__" for p in folder.iterdir()
            ):
                shutil.rmtree(folder)
                folder = folder.parent


def _bump_requirement(root: Path, old: str | None, new: str, *, write: bool) -> Change | None:
    """Rewrite the requirement ``microcore new`` wrote for ``old`` to the one for ``new``."""
    path = root / "pyproject.toml"
    if old is None or not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    before, after = f'"{requirement(old)}"', f'"{requirement(new)}"'
    if before == after or before not in text:
        return None
    if write:
        path.write_text(text.replace(before, after), encoding="utf-8")
    return Change("updated", "pyproject.toml", f"dependency {before} -> {after}")


def upgrade_tools(root: Path, source: Path, version: str, *, dry_run: bool = False) -> Upgrade:
    """Bring the tools of ``source`` (microcore ``version``'s bundle) into project ``root``."""
    lock = read_lock(root)
    changes, recorded = _plan(root, source, version, lock)
    upgrade = Upgrade(lock.version if lock else None, version, changes, dry_run)
    if not dry_run:
        _apply(root, source, changes)
        write_lock(root, version, recorded)
    bumped = _bump_requirement(root, upgrade.old_version, version, write=not dry_run)
    if bumped is not None:
        changes.append(bumped)
    return upgrade
