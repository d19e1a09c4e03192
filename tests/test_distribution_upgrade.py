"""``microcore tools upgrade``: a project made by version N takes version N+1's standard tools.

Version N+1 is simulated by a modified copy of this microcore's bundle: one tool file
changed (the project never edited it), one changed that the project edited too, one new
tool, one tool dropped. The project keeps its own tool and its edits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from microcore._dev import cli
from microcore._dev.bundle import write_bundle
from microcore._dev.scaffold import new_project
from microcore._dev.upgrade import LOCK_FILE, Change, read_lock, upgrade_tools
from microcore.testing import start_app
from microcore.tooling import ConfigurationError

REPO = Path(__file__).resolve().parents[1]

OLD_TOOL = 'from microcore import Tool\n\n\nclass OldTool(Tool):\n    name = "old"\n'
CACHE_TOOL = 'from microcore import Tool\n\n\nclass CacheTool(Tool):\n    name = "cache"\n'
PAYMENTS_TOOL = 'from microcore import Tool\n\n\nclass PaymentsTool(Tool):\n    name = "payments"\n'
MY_LOGGER_EDIT = "\n\n# shop: our own log field\n"
NEW_LOGGER_EDIT = "\n\n# microcore 0.3.0: a better logger\n"


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


@pytest.fixture
def versions(tmp_path: Path) -> tuple[Path, Path]:
    """Bundles of "0.2.0" (this one plus a tool 'old') and "0.3.0" (changed, see above)."""
    n, n1 = tmp_path / "bundle-0.2.0", tmp_path / "bundle-0.3.0"
    write_bundle(REPO, n)
    (n / "tools/old").mkdir()
    (n / "tools/old/__init__.py").write_text("")
    (n / "tools/old/old_tool.py").write_text(OLD_TOOL)
    write_bundle(n, n1)
    shutil.rmtree(n1 / "tools/old")
    _append(n1 / "tools/http/http_tool.py", "\n\n# microcore 0.3.0: faster routing\n")
    _append(n1 / "tools/logger/logger_tool.py", NEW_LOGGER_EDIT)
    (n1 / "tools/cache").mkdir()
    (n1 / "tools/cache/__init__.py").write_text("")
    (n1 / "tools/cache/cache_tool.py").write_text(CACHE_TOOL)
    return n, n1


@pytest.fixture
def shop(tmp_path: Path, versions: tuple[Path, Path]) -> Path:
    """A project made by 0.2.0, with its own tool and an edited standard tool."""
    root = new_project(tmp_path / "shop", source=versions[0], version="0.2.0")
    (root / "tools/payments").mkdir()
    (root / "tools/payments/__init__.py").write_text("")
    (root / "tools/payments/payments_tool.py").write_text(PAYMENTS_TOOL)
    _append(root / "tools/logger/logger_tool.py", MY_LOGGER_EDIT)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _actions(changes: list[Change]) -> dict[str, str]:
    return {change.path: change.action for change in changes}


async def test_upgrade_keeps_custom_and_edited_tools(
    shop: Path, versions: tuple[Path, Path]
) -> None:
    """N -> N+1: untouched files updated, new tool added, dropped tool removed, the
    project's own tool untouched, its edited logger kept with 0.3.0's version beside it."""
    n1 = versions[1]
    mine = (shop / "tools/logger/logger_tool.py").read_text()
    upgrade = upgrade_tools(shop, n1, "0.3.0")
    assert (upgrade.old_version, upgrade.new_version) == ("0.2.0", "0.3.0")
    assert _actions(upgrade.changes) == {
        "tools/cache/__init__.py": "added",
        "tools/cache/cache_tool.py": "added",
        "tools/http/http_tool.py": "updated",
        "tools/logger/logger_tool.py": "conflict",
        "tools/old/__init__.py": "removed",
        "tools/old/old_tool.py": "removed",
        "tools/payments/": "yours",
        "pyproject.toml": "updated",
    }
    assert (shop / "tools/logger/logger_tool.py").read_text() == mine  # never overwritten
    beside = shop / "tools/logger/logger_tool.py.new"
    assert beside.read_bytes() == (n1 / "tools/logger/logger_tool.py").read_bytes()
    [conflict] = upgrade.conflicts
    assert f"+{NEW_LOGGER_EDIT.strip()}" in conflict.diff
    assert f"-{MY_LOGGER_EDIT.strip()}" in conflict.diff
    assert (shop / "tools/payments/payments_tool.py").read_text() == PAYMENTS_TOOL
    assert (shop / "tools/http/http_tool.py").read_bytes() == (
        n1 / "tools/http/http_tool.py"
    ).read_bytes()
    assert (shop / "tools/cache/cache_tool.py").read_text() == CACHE_TOOL
    assert not (shop / "tools/old").exists()
    assert '"microcore>=0.3.0,<0.4"' in (shop / "pyproject.toml").read_text()
    lock = read_lock(shop)
    assert lock is not None and lock.version == "0.3.0"
    assert "tools/cache/cache_tool.py" in lock.files and "tools/old/old_tool.py" not in lock.files
    assert not any(rel.startswith("tools/payments/") for rel in lock.files)

    running = await start_app(shop)  # the upgraded project boots with every tool
    try:
        tools = running.kernel.status().tools
        assert tools["payments"].status == "ok" and tools["cache"].status == "ok"
        assert "old" not in tools
    finally:
        await running.stop()

    again = upgrade_tools(shop, n1, "0.3.0")  # the edit now counts against 0.3.0
    assert _actions(again.changes) == {
        "tools/logger/logger_tool.py": "kept",
        "tools/payments/": "yours",
    }
    assert "microcore 0.3.0 did not change it" in again.changes[0].note


def test_cli_prints_the_plan_and_dry_run_writes_nothing(
    shop: Path,
    versions: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dry-run prints every change and the edited file's diff, and changes no file."""
    monkeypatch.setattr(cli, "bundle_root", lambda: versions[1])
    monkeypatch.setattr(cli, "__version__", "0.3.0")
    before = _tree(shop)
    assert cli.main(["tools", "upgrade", "--dry-run", "--root", str(shop)]) == 0
    assert _tree(shop) == before
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "standard tools: microcore 0.2.0 -> 0.3.0"
    assert "  added     tools/cache/cache_tool.py" in out
    assert "  updated   tools/http/http_tool.py" in out
    assert "  yours     tools/payments/  (your own tool: untouched)" in out
    assert (
        "  conflict  tools/logger/logger_tool.py  (edited here and changed in microcore 0.3.0: "
        "its version is written beside it as tools/logger/logger_tool.py.new)"
    ) in out
    assert "      --- tools/logger/logger_tool.py (yours)" in out
    assert "      +# microcore 0.3.0: a better logger" in out
    assert "6 file(s) would be added, updated or removed" in out  # pyproject.toml too
    assert out[-2].startswith("1 edited file(s) to merge by hand: tools/logger/logger_tool.py.new")
    assert out[-2].endswith("would be written")
    assert not any(line.startswith("wrote ") for line in out)

    assert cli.main(["tools", "upgrade", "--root", str(shop)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"wrote {LOCK_FILE} (microcore 0.3.0); now run: make test"
    assert cli.main(["tools", "upgrade", "--root", str(shop)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "no file to update" in out and not any("merge by hand" in line for line in out)


def test_project_without_a_lock_counts_every_difference_as_an_edit(
    tmp_path: Path,
    versions: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A project made before 0.2.0 (no lock): identical files are recorded, differing ones
    get the new version beside them, missing ones are added; the lock is then written."""
    n, n1 = versions
    root = new_project(tmp_path / "old-shop", source=n, version="0.2.0")
    (root / LOCK_FILE).unlink()
    monkeypatch.setattr(cli, "bundle_root", lambda: n1)
    assert cli.main(["tools", "upgrade", "--dry-run", "--root", str(root)]) == 0
    assert capsys.readouterr().out.startswith(
        f"standard tools: microcore unknown (no {LOCK_FILE}: a file that differs counts as edited)"
    )
    upgrade = upgrade_tools(root, n1, "0.3.0")
    actions = _actions(upgrade.changes)
    assert upgrade.old_version is None
    assert actions["tools/http/http_tool.py"] == "conflict"
    assert actions["tools/cache/cache_tool.py"] == "added"
    assert actions["tools/old/"] == "yours"  # unknown to 0.3.0 and to the missing lock
    assert "differs from the file shipped in microcore 0.3.0" in upgrade.conflicts[0].note
    assert read_lock(root) is not None
    assert (root / "tools/http/http_tool.py.new").is_file()


def test_deleted_and_dropped_files(tmp_path: Path, versions: tuple[Path, Path]) -> None:
    """A standard file the project deleted stays deleted; an edited file microcore dropped
    stays, now the project's own; a project without tools/ gets them all."""
    n, n1 = versions
    root = new_project(tmp_path / "shop", source=n, version="0.2.0")
    (root / "tools/http/http_tool.py").unlink()
    _append(root / "tools/old/old_tool.py", "# ours now\n")
    (root / "tools/old/__pycache__").mkdir()
    (root / "tools/NOTES.md").write_text("not a tool folder\n")
    (root / "pyproject.toml").write_text('dependencies = ["microcore>=0.2"]\n')
    actions = _actions(upgrade_tools(root, n1, "0.3.0").changes)
    assert actions["tools/http/http_tool.py"] == "skipped"
    assert actions["tools/old/old_tool.py"] == "kept"
    assert actions["tools/old/__init__.py"] == "removed"
    assert "pyproject.toml" not in actions  # a range the project wrote itself is its own
    assert not (root / "tools/http/http_tool.py").exists()
    assert (root / "tools/old/old_tool.py").is_file()
    assert "tools/http/http_tool.py" in read_lock(root).files  # type: ignore[union-attr]

    bare = tmp_path / "bare"
    (bare / "domains").mkdir(parents=True)
    upgrade = upgrade_tools(bare, n1, "0.3.0")
    assert {c.action for c in upgrade.changes} == {"added"}
    assert (bare / "tools/http/http_tool.py").is_file() and (bare / LOCK_FILE).is_file()


def test_removed_tool_folder_with_only_caches_goes(
    tmp_path: Path, versions: tuple[Path, Path]
) -> None:
    """Removing a dropped tool's last file removes its folder, caches included, not tools/."""
    n, n1 = versions
    root = new_project(tmp_path / "shop", source=n, version="0.2.0")
    (root / "tools/old/__init__.py").unlink()  # dropped and deleted: nothing to say
    (root / "tools/old/__pycache__").mkdir()
    (root / "tools/old/__pycache__/old_tool.cpython-311.pyc").write_bytes(b"")
    assert _actions(upgrade_tools(root, n1, "0.3.0").changes)["tools/old/old_tool.py"] == "removed"
    assert not (root / "tools/old").exists() and (root / "tools/http").is_dir()
    (root / "pyproject.toml").unlink()  # no pyproject: nothing to raise
    assert _actions(upgrade_tools(root, n, "0.2.0").changes)["tools/old/old_tool.py"] == "added"


@pytest.mark.parametrize("text", ["{not json", '{"microcore": "0.2.0"}', "[]"])
def test_unreadable_lock_is_one_clear_error(
    shop: Path,
    versions: tuple[Path, Path],
    text: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A damaged tools.lock.json stops the upgrade, saying how to recover; nothing is written."""
    (shop / LOCK_FILE).write_text(text)
    with pytest.raises(ConfigurationError, match=f"{LOCK_FILE} cannot be read"):
        upgrade_tools(shop, versions[1], "0.3.0")
    monkeypatch.setattr(cli, "bundle_root", lambda: versions[1])
    assert cli.main(["tools", "upgrade", "--root", str(shop)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"microcore: error: {LOCK_FILE} cannot be read") and "delete it" in err
    assert not (shop / "tools/cache").exists()
    assert (shop / LOCK_FILE).read_text() == text


def test_long_differences_are_cut_with_the_command_to_see_them(
    shop: Path, versions: tuple[Path, Path]
) -> None:
    """A conflict's diff is shown up to 40 lines, then says how to see the rest."""
    _append(shop / "tools/logger/logger_tool.py", "".join(f"# line {i}\n" for i in range(60)))
    [conflict] = upgrade_tools(shop, versions[1], "0.3.0").conflicts
    assert len(conflict.diff) == 41
    rel = "tools/logger/logger_tool.py"
    assert conflict.diff[-1].endswith(f"more lines: diff {rel} {rel}.new")


def test_write_bundle_replaces_a_stale_copy(tmp_path: Path) -> None:
    """A rebuilt bundle holds exactly the source's files: those of an earlier build go."""
    source = tmp_path / "src"
    (source / "domains").mkdir(parents=True)
    (source / "app.py").write_text("app = None\n")
    (source / "domains/__init__.py").write_text("")
    dest = tmp_path / "dest"
    (dest / "tools/gone").mkdir(parents=True)
    (dest / "tools/gone/gone_tool.py").write_text("")
    assert write_bundle(source, dest) == ["app.py", "domains/__init__.py"]
    assert not (dest / "tools").exists()
