"""Hot reload at the kernel level: batches of file changes swap plugins atomically."""

from __future__ import annotations

import gc
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import anyio
import pytest

from microcore._app import running
from microcore._dev.reload import Reloader
from microcore.testing import Kernel
from tests.microcore.conftest import KernelProjectFactory, recorder_of, registry_of
from tests.support import eventually

PLUGIN = """
from microcore import Plugin

class {cls}(Plugin):
    def __init__(self, registry, recorder):
        self.registry, self.recorder = registry, recorder

    async def on_boot(self):
        self.registry.add("{item}")

    async def shutdown(self):
        self.recorder.record("{cls}.shutdown:{item}")
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def project(kernel_project: KernelProjectFactory) -> Path:
    return kernel_project(
        {
            "domains/a/plugins/one_plugin.py": PLUGIN.format(cls="OnePlugin", item="one-v1"),
            "domains/a/plugins/two_plugin.py": PLUGIN.format(cls="TwoPlugin", item="two-v1"),
        }
    )


async def test_changed_plugin_swaps_to_new_version(project: Path) -> None:
    """A changed file's plugin is rebooted and swapped; others and tools are untouched."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        registry = registry_of(kernel)
        two_before = kernel.plugins["a.TwoPlugin"]
        path = write(
            project,
            "domains/a/plugins/one_plugin.py",
            PLUGIN.format(cls="OnePlugin", item="one-v2"),
        )
        report = await Reloader(kernel).apply([path])
        assert report.loaded == ["a.OnePlugin"]
        assert registry.visible() == ["one-v2", "two-v1"]
        assert kernel.plugins["a.TwoPlugin"] is two_before
        assert kernel.plugins["a.OnePlugin"].instance.registry.tool is registry  # type: ignore[union-attr]
        assert kernel.status().reloaded_at is not None
        # the old version shuts down in the background, once its calls in flight are done
        calls = recorder_of(kernel).calls
        await eventually(lambda: "OnePlugin.shutdown:one-v1" in calls)


async def test_new_and_deleted_files_load_and_unload(project: Path) -> None:
    """A new plugin file is loaded; a deleted one is unloaded with all it registered."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        added = write(
            project,
            "domains/b/plugins/three_plugin.py",
            PLUGIN.format(cls="ThreePlugin", item="three"),
        )
        removed = project / "domains/a/plugins/two_plugin.py"
        removed.unlink()
        report = await Reloader(kernel).apply([added, removed])
        assert (report.loaded, report.unloaded) == (["b.ThreePlugin"], ["a.TwoPlugin"])
        assert registry_of(kernel).visible() == ["one-v1", "three"]


async def test_renamed_class_replaces_the_old_identity(project: Path) -> None:
    """Renaming the class unloads the old identity and loads the new one."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        path = write(
            project,
            "domains/a/plugins/one_plugin.py",
            PLUGIN.format(cls="FirstPlugin", item="first"),
        )
        report = await Reloader(kernel).apply([path])
        assert (report.loaded, report.unloaded) == (["a.FirstPlugin"], ["a.OnePlugin"])
        assert sorted(kernel.plugins) == ["a.FirstPlugin", "a.TwoPlugin"]


async def test_moved_file_keeps_its_identity(project: Path) -> None:
    """Moving a plugin to another file in one batch does not clash with itself."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        old = project / "domains/a/plugins/one_plugin.py"
        text = old.read_text()
        old.unlink()
        new = write(project, "domains/a/plugins/first_plugin.py", text)
        report = await Reloader(kernel).apply([old, new])
        assert report.loaded == ["a.OnePlugin"]
        assert report.failed == {}
        assert kernel.plugins["a.OnePlugin"].file == new
        assert registry_of(kernel).visible() == ["one-v1", "two-v1"]


async def test_duplicate_identity_in_another_file_fails(project: Path) -> None:
    """A second file defining an existing <domain>.<Class> fails naming the first file; the
    failure shows under the file's own name (<domain>.<file stem>)."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        copy = write(
            project, "domains/a/plugins/copy_plugin.py", PLUGIN.format(cls="OnePlugin", item="copy")
        )
        report = await Reloader(kernel).apply([copy])
        assert "already defined in domains/a/plugins/one_plugin.py" in str(
            report.failed["a.copy_plugin"]
        )
        assert kernel.failures()["plugins"] == ["a.copy_plugin"]
        assert kernel.plugins["a.OnePlugin"].status == "ok"
        assert registry_of(kernel).visible() == ["one-v1", "two-v1"]
        write(
            project,
            "domains/a/plugins/copy_plugin.py",
            PLUGIN.format(cls="CopyPlugin", item="copy"),
        )
        report = await Reloader(kernel).apply([copy])
        assert report.loaded == ["a.CopyPlugin"]
        assert kernel.failures()["plugins"] == []
        assert "a.copy_plugin" not in kernel.plugins


async def test_duplicate_class_that_fails_in_a_batch_shows_under_its_file_name(
    project: Path,
) -> None:
    """One batch reloads a file and adds another defining the same class, which fails to
    boot: the failure stays visible as <domain>.<file stem>, the first file serves on."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        one = write(
            project,
            "domains/a/plugins/one_plugin.py",
            PLUGIN.format(cls="OnePlugin", item="one-v2"),
        )
        other = write(
            project,
            "domains/a/plugins/other_plugin.py",
            PLUGIN.format(cls="OnePlugin", item="other").replace(
                'self.registry.add("other")', 'raise RuntimeError("other is broken")'
            ),
        )
        await Reloader(kernel).apply([one, other])
        assert kernel.failures()["plugins"] == ["a.other_plugin"]
        assert kernel.plugins["a.OnePlugin"].file == one
        assert registry_of(kernel).visible() == ["one-v2", "two-v1"]


async def test_helper_module_change_reloads_its_dependents_only(
    kernel_project: KernelProjectFactory,
) -> None:
    """Changing models.py reloads the plugins importing it (even indirectly), not the others."""
    uses = """
    from microcore import Plugin
    {imp}

    class {cls}(Plugin):
        def __init__(self, registry):
            self.registry = registry

        async def on_boot(self):
            self.registry.add("{cls}:" + LABEL)
    """
    root = kernel_project(
        {
            "domains/a/models.py": "LABEL = 'v1'\n",
            "domains/a/helpers.py": "from .models import LABEL\n",
            "domains/a/plugins/direct_plugin.py": uses.format(
                cls="DirectPlugin", imp="from domains.a.models import LABEL"
            ),
            "domains/a/plugins/indirect_plugin.py": uses.format(
                cls="IndirectPlugin", imp="from domains.a.helpers import LABEL"
            ),
            "domains/a/plugins/other_plugin.py": uses.format(cls="OtherPlugin", imp="LABEL = 'x'"),
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        other = kernel.plugins["a.OtherPlugin"]
        models = write(root, "domains/a/models.py", "LABEL = 'v2'\n")
        report = await Reloader(kernel).apply([models])
        assert report.loaded == ["a.DirectPlugin", "a.IndirectPlugin"]
        assert registry_of(kernel).visible() == [
            "DirectPlugin:v2",
            "IndirectPlugin:v2",
            "OtherPlugin:x",
        ]
        assert kernel.plugins["a.OtherPlugin"] is other


@pytest.mark.parametrize(
    ("broken", "kind"),
    [
        ("def on_boot(:\n", "SyntaxError"),
        (
            PLUGIN.format(cls="OnePlugin", item="x").replace(
                "self.registry.add", "raise RuntimeError('boot broke'); self.registry.add"
            ),
            "RuntimeError",
        ),
    ],
)
async def test_broken_new_version_keeps_old_serving(project: Path, broken: str, kind: str) -> None:
    """A file that fails to import or boot keeps the old version; the error shows until fixed."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        reloader = Reloader(kernel)
        path = write(project, "domains/a/plugins/one_plugin.py", broken)
        report = await reloader.apply([path])
        assert list(report.failed) == ["domains/a/plugins/one_plugin.py"]
        assert registry_of(kernel).visible() == ["one-v1", "two-v1"]
        status = kernel.status()
        error = status.reload_errors["domains/a/plugins/one_plugin.py"]
        assert error.type == kind
        assert error.file == "domains/a/plugins/one_plugin.py"
        assert status.plugins["a.OnePlugin"].reload_error == error
        assert status.plugins["a.OnePlugin"].status == "ok"

        fixed = write(
            project,
            "domains/a/plugins/one_plugin.py",
            PLUGIN.format(cls="OnePlugin", item="one-v3"),
        )
        report = await reloader.apply([fixed])
        assert report.loaded == ["a.OnePlugin"]
        assert kernel.status().reload_errors == {}
        assert registry_of(kernel).visible() == ["one-v3", "two-v1"]


async def test_failed_file_at_boot_loads_once_fixed(kernel_project: KernelProjectFactory) -> None:
    """A plugin broken at boot is replaced by its fixed version on the next save."""
    root = kernel_project({"domains/a/plugins/one_plugin.py": "raise ValueError('early')\n"})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        reloader = Reloader(kernel)
        still = write(root, "domains/a/plugins/one_plugin.py", "raise ValueError('still')\n")
        report = await reloader.apply([still])
        assert kernel.plugins["a.one_plugin"].error.message == "still"  # type: ignore[union-attr]
        assert list(report.failed) == ["a.one_plugin"]
        path = write(
            root, "domains/a/plugins/one_plugin.py", PLUGIN.format(cls="OnePlugin", item="fixed")
        )
        await reloader.apply([path])
        assert sorted(kernel.plugins) == ["a.OnePlugin"]
        assert kernel.failures() == {"tools": [], "plugins": []}


async def test_unchanged_empty_and_unrelated_files_do_nothing(project: Path) -> None:
    """Same content, a truncated (empty) file, data files and outside paths are ignored."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        reloader = Reloader(kernel)
        same = project / "domains/a/plugins/one_plugin.py"
        empty = write(project, "domains/a/plugins/two_plugin.py", "")
        data = write(project, "domains/a/seed.sql", "SELECT 1;")
        notes = write(project, "domains/a/notes.txt", "hi")
        report = await reloader.apply([same, empty, data, notes, Path("/elsewhere/x.py")])
        assert (report.loaded, report.unloaded, report.failed) == ([], [], {})
        assert report.restart_needed == []
        assert registry_of(kernel).visible() == ["one-v1", "two-v1"]


async def test_kernel_and_tool_changes_ask_for_a_restart(project: Path) -> None:
    """Changes under tools/, app.py, .env or microcore/ are reported as needing a restart,
    each with its reason; a migration is offered to the tools instead (none takes it here)."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        migration = write(project, "domains/a/migrations/002_more.sql", "SELECT 1;")
        report = await Reloader(kernel).apply(
            [Path("tools/recorder/recorder_tool.py"), Path("app.py"), Path(".env"), migration]
        )
        assert report.restart_needed == ["tools/recorder/recorder_tool.py", "app.py", ".env"]
        assert report.restart_reasons["tools/recorder/recorder_tool.py"] == (
            "tools and the kernel load once per process"
        )
        assert report.restart_reasons["app.py"] == "app.py and .env are read at start"
        assert report.loaded == []


async def test_reload_listeners_run_after_a_reload(project: Path) -> None:
    """Listeners (sync or async) run after each reload; a failing one is isolated."""
    kernel = Kernel(project, environ={})
    calls: list[str] = []

    async def async_listener() -> None:
        calls.append("async")

    def broken() -> None:
        raise RuntimeError("listener broke")

    kernel.add_reload_listener(lambda: calls.append("sync"))
    kernel.add_reload_listener(broken)
    kernel.add_reload_listener(async_listener)
    async with kernel.run():
        path = write(
            project, "domains/a/plugins/one_plugin.py", PLUGIN.format(cls="OnePlugin", item="again")
        )
        await Reloader(kernel).apply([path])
    assert calls == ["sync", "async"]


async def test_watcher_applies_real_file_edits(project: Path) -> None:
    """With MICROCORE_RELOAD=1 a saved file is picked up by the watcher in the running kernel."""
    kernel = Kernel(project, environ={"MICROCORE_RELOAD": "1"})
    async with running(kernel):
        registry = registry_of(kernel)
        with anyio.fail_after(10):
            # the watcher starts asynchronously: keep saving until a version shows
            version = 0
            while not any(i.startswith("one-w") for i in registry.visible()):
                version += 1
                write(
                    project,
                    "domains/a/plugins/one_plugin.py",
                    PLUGIN.format(cls="OnePlugin", item=f"one-w{version}"),
                )
                await anyio.sleep(0.05)
        assert kernel.status().reload_ms is not None


async def test_half_failing_file_keeps_every_old_class(
    kernel_project: KernelProjectFactory,
) -> None:
    """If one class of a file fails, the file's other new classes are dropped too."""
    two = PLUGIN.format(cls="OnePlugin", item="one-{v}") + PLUGIN.format(
        cls="SecondPlugin", item="second-{v}"
    ).replace("from microcore import Plugin", "")
    root = kernel_project({"domains/a/plugins/one_plugin.py": two.replace("{v}", "1")})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        broken = two.replace("{v}", "2").replace(
            'self.registry.add("second-2")', 'raise RuntimeError("second broke")'
        )
        path = write(root, "domains/a/plugins/one_plugin.py", broken)
        report = await Reloader(kernel).apply([path])
        assert "second broke" in str(report.failed["domains/a/plugins/one_plugin.py"])
        assert registry_of(kernel).visible() == ["one-1", "second-1"]


async def test_plugin_failing_on_boot_serves_once_fixed(
    kernel_project: KernelProjectFactory,
) -> None:
    """A plugin whose on_boot failed at boot is replaced by its fixed version in place."""
    failing = PLUGIN.format(cls="OnePlugin", item="x").replace(
        'self.registry.add("x")', 'raise RuntimeError("not yet")'
    )
    root = kernel_project({"domains/a/plugins/one_plugin.py": failing})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert kernel.plugins["a.OnePlugin"].status == "failed"
        path = write(
            root, "domains/a/plugins/one_plugin.py", PLUGIN.format(cls="OnePlugin", item="fixed")
        )
        await Reloader(kernel).apply([path])
        assert kernel.plugins["a.OnePlugin"].status == "ok"
        assert registry_of(kernel).visible() == ["fixed"]


async def test_dependents_follow_plain_imports_and_survive_broken_helpers(
    kernel_project: KernelProjectFactory,
) -> None:
    """`import domains.x.models` counts as a dependency; a helper with a syntax error is skipped."""
    plugin = """
    import domains.a.models
    from microcore import Plugin

    class UserPlugin(Plugin):
        def __init__(self, registry):
            self.registry = registry

        async def on_boot(self):
            self.registry.add(domains.a.models.LABEL)
    """
    root = kernel_project(
        {
            "domains/a/models.py": "LABEL = 'v1'\n",
            "domains/a/broken.py": "def nope(:\n",
            "domains/a/plugins/user_plugin.py": plugin,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        models = write(root, "domains/a/models.py", "LABEL = 'v2'\n")
        report = await Reloader(kernel).apply([models])
        assert report.loaded == ["a.UserPlugin"]
        assert registry_of(kernel).visible() == ["v2"]


async def test_context_is_written_only_when_it_changes(project: Path) -> None:
    """AI_CONTEXT.md is rewritten after a reload only if its text differs."""
    kernel = Kernel(project, environ={})
    async with kernel.run():
        reloader = Reloader(kernel)
        await reloader.write_context()
        context = project / "AI_CONTEXT.md"
        first = context.stat().st_mtime_ns
        context.touch()
        touched = context.stat().st_mtime_ns
        await reloader.write_context()
        assert context.stat().st_mtime_ns == touched >= first


async def test_edit_keeping_size_and_mtime_is_served(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-character fix saved within the same second (same size, same mtime) serves the
    new code, three quick rewrites in a row: a stale bytecode cache never wins."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # the trap needs .pyc files
    kernel = Kernel(project, environ={})
    path = project / "domains/a/plugins/one_plugin.py"
    async with kernel.run():
        registry = registry_of(kernel)
        stamp = path.stat()
        for item in ("one-v7", "one-v8", "one-v9"):  # same length as "one-v1"
            path.write_text(PLUGIN.format(cls="OnePlugin", item=item))
            os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
            assert path.stat().st_size == stamp.st_size
            report = await Reloader(kernel).apply([path])
            assert report.loaded == ["a.OnePlugin"]
            assert registry.visible() == [item, "two-v1"]


async def test_retired_versions_are_freed(project: Path) -> None:
    """After a handful of reloads the retired versions' classes, instances and modules
    are collectable: nothing in the kernel or the tools keeps them alive."""
    kernel = Kernel(project, environ={})
    path = project / "domains/a/plugins/one_plugin.py"
    async with kernel.run():
        first = kernel.plugins["a.OnePlugin"]
        assert first.cls is not None and first.instance is not None
        old_class, old_instance = weakref.ref(first.cls), weakref.ref(first.instance)
        old_module = weakref.ref(sys.modules[first.cls.__module__])
        calls = recorder_of(kernel).calls
        del first
        for version in range(2, 7):
            write(
                project,
                "domains/a/plugins/one_plugin.py",
                PLUGIN.format(cls="OnePlugin", item=f"one-v{version}"),
            )
            await Reloader(kernel).apply([path])
        await eventually(lambda: calls.count("OnePlugin.shutdown:one-v5") == 1)
        gc.collect()
        assert old_class() is None
        assert old_instance() is None
        assert old_module() is None


FILES_TOOL = """
from microcore import Tool
from microcore.tooling import FilesApplied


class FilesTool(Tool):
    name = "files"

    def __init__(self):
        self.seen = []

    async def files_changed(self, paths):
        self.seen.append([p.name for p in paths])
        if any(p.name == "boom.sql" for p in paths):
            raise RuntimeError("cannot read it")
        return FilesApplied()
"""

BROKEN_TOOL = """
from microcore import Tool


class BrokenTool(Tool):
    name = "broken"

    async def setup(self):
        raise RuntimeError("down")

    async def files_changed(self, paths):
        raise AssertionError("a failed tool is never asked")
"""


async def test_other_domain_files_go_to_the_working_tools(
    kernel_project: KernelProjectFactory,
) -> None:
    """A changed non-Python domain file is offered to every working tool (never a failed
    one); a tool that raises fails the file, visible in status; files outside domains/ that
    need no restart are ignored."""
    root = kernel_project(
        {
            "domains/a/plugins/one_plugin.py": PLUGIN.format(cls="OnePlugin", item="one-v1"),
            "tools/files/files_tool.py": FILES_TOOL,
            "tools/broken/broken_tool.py": BROKEN_TOOL,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        files: Any = kernel.tool("files")
        notes = write(root, "NOTES.md", "not the framework's business")
        script = write(root, "scripts/seed.py", "print('a script of the project')")
        good = write(root, "domains/a/migrations/002_fine.sql", "SELECT 1;")
        report = await Reloader(kernel).apply([notes, script, good])
        assert files.seen == [["002_fine.sql"]]
        assert (report.failed, report.restart_needed) == ({}, [])

        boom = write(root, "domains/a/migrations/boom.sql", "x")
        report = await Reloader(kernel).apply([boom])
        assert files.seen[-1] == ["boom.sql"]
        error = kernel.status().reload_errors["domains/a/migrations/boom.sql"]
        assert error.message == "tool 'files' failed: cannot read it"
