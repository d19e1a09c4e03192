"""The kernel: discovery, injection, lifecycle order and failure isolation."""

from __future__ import annotations

import pytest

from microcore.testing import Kernel
from microcore.tooling import ConfigurationError, DependencyError, ErrorView
from tests.microcore.conftest import KernelProjectFactory, recorder_of, registry_of
from tests.support import eventually, present

GOOD = """
from microcore import Plugin

class GoodPlugin(Plugin):
    def __init__(self, registry, recorder):
        self.registry, self.recorder = registry, recorder

    async def on_boot(self):
        self.recorder.record("good.on_boot")
        self.registry.add("good")

    async def shutdown(self):
        self.recorder.record("good.shutdown")
"""


async def test_lifecycle_runs_in_contract_order(kernel_project: KernelProjectFactory) -> None:
    """Tools set up, plugins boot, tools complete; shutdown drains, stops plugins, then tools."""
    root = kernel_project({"domains/a/plugins/good_plugin.py": GOOD})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        recorder = recorder_of(kernel)
    assert recorder.calls == [
        "recorder.setup",
        "registry.setup",
        "good.on_boot",
        "recorder.on_boot_complete",
        "recorder.drain",
        "good.shutdown",
        "registry.shutdown",
        "recorder.shutdown",
    ]


async def test_plugin_identity_is_domain_and_class(kernel_project: KernelProjectFactory) -> None:
    """A plugin is known as <domain>.<ClassName> with its file and injected tools."""
    root = kernel_project({"domains/shop/plugins/good_plugin.py": GOOD})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        plugin = kernel.status().plugins["shop.GoodPlugin"]
        assert plugin.status == "ok"
        assert plugin.file == "domains/shop/plugins/good_plugin.py"
        assert plugin.tools == ["registry", "recorder"]
        assert plugin.registrations == {"item": ["good"]}


async def test_discovery_ignores_imported_classes_and_other_files(
    kernel_project: KernelProjectFactory,
) -> None:
    """Only Plugin subclasses defined in *_plugin.py files under domains/*/plugins load."""
    root = kernel_project(
        {
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/a/plugins/again_plugin.py": "from domains.a.plugins.good_plugin import *\n",
            "domains/a/plugins/helper.py": GOOD,
            "domains/a/other/good_plugin.py": GOOD,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert list(kernel.status().plugins) == ["a.GoodPlugin"]


async def test_duplicate_class_name_fails_under_its_file_name(
    kernel_project: KernelProjectFactory,
) -> None:
    """A class name defined in two files of a domain: the first serves, the second shows
    as failed under <domain>.<file stem> in status and health, naming the first file."""
    root = kernel_project(
        {
            "domains/a/plugins/first_plugin.py": GOOD,
            "domains/a/plugins/second_plugin.py": GOOD,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        plugins = kernel.status().plugins
        assert kernel.failures()["plugins"] == ["a.second_plugin"]
    assert plugins["a.GoodPlugin"].file == "domains/a/plugins/first_plugin.py"
    second = plugins["a.second_plugin"]
    assert second.status == "failed" and second.file == "domains/a/plugins/second_plugin.py"
    assert "already defined in domains/a/plugins/first_plugin.py" in present(second.error).message


async def test_missing_tool_fails_only_that_plugin(kernel_project: KernelProjectFactory) -> None:
    """A plugin asking for an unknown tool fails naming it and the available tools."""
    root = kernel_project(
        {
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/a/plugins/pay_plugin.py": """
            from microcore import Plugin

            class PayPlugin(Plugin):
                def __init__(self, payments, registry):
                    self.registry = registry
            """,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        status = kernel.status().plugins
        assert status["a.GoodPlugin"].status == "ok"
        error = status["a.PayPlugin"].error
        assert error is not None
        assert status["a.PayPlugin"].status == "failed"
        assert error.message == (
            "plugin 'a.PayPlugin' needs tool 'payments', which is not registered; "
            "available tools: config, logger, recorder, registry"
        )
        assert (error.file, error.line) == ("domains/a/plugins/pay_plugin.py", 5)
        assert kernel.failures() == {"tools": [], "plugins": ["a.PayPlugin"]}


async def test_optional_parameter_gets_tool_or_default(
    kernel_project: KernelProjectFactory,
) -> None:
    """A parameter with a default is injected when the tool exists, else keeps its default."""
    root = kernel_project(
        {
            "domains/a/plugins/opt_plugin.py": """
            from microcore import Plugin

            class OptPlugin(Plugin):
                def __init__(self, recorder, cache=None, registry=None):
                    recorder.record(f"cache={cache} registry={registry is not None}")
            """
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert "cache=None registry=True" in recorder_of(kernel).calls


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("*tools", "constructor parameter *tools cannot be injected"),
        ("**tools", "constructor parameter **tools cannot be injected"),
        ("recorder, /", "constructor parameter 'recorder' is positional-only"),
    ],
)
async def test_uninjectable_signature_is_refused(
    kernel_project: KernelProjectFactory, signature: str, message: str
) -> None:
    """*args, **kwargs and positional-only parameters fail the plugin with a fix hint."""
    root = kernel_project(
        {
            "domains/a/plugins/bad_plugin.py": f"""
            from microcore import Plugin

            class BadPlugin(Plugin):
                def __init__(self, {signature}):
                    pass
            """
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        error = kernel.status().plugins["a.BadPlugin"].error
        assert error is not None
        assert message in error.message


async def test_sync_hook_is_refused(kernel_project: KernelProjectFactory) -> None:
    """A plugin with a sync on_boot fails with an error pointing at the hook."""
    root = kernel_project(
        {
            "domains/a/plugins/sync_plugin.py": """
            from microcore import Plugin

            class SyncPlugin(Plugin):
                def on_boot(self):
                    pass
            """
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        error = kernel.status().plugins["a.SyncPlugin"].error
        assert error is not None
        assert error.message == (
            "plugin 'a.SyncPlugin': on_boot must be a coroutine function: "
            "declare it 'async def on_boot(...)'"
        )
        assert error.line == 5


async def test_import_error_is_isolated_with_file_and_line(
    kernel_project: KernelProjectFactory,
) -> None:
    """A plugin file that fails to import is recorded failed; the others boot."""
    root = kernel_project(
        {
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/a/plugins/broken_plugin.py": "import json\n\nraise ValueError('nope')\n",
            "domains/a/plugins/syntax_plugin.py": "def broken(:\n",
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        status = kernel.status().plugins
        assert status["a.GoodPlugin"].status == "ok"
        assert status["a.broken_plugin"].error == ErrorView(
            type="ValueError",
            message="nope",
            file="domains/a/plugins/broken_plugin.py",
            line=3,
        )
        assert present(status["a.syntax_plugin"].error).type == "SyntaxError"
        assert present(status["a.syntax_plugin"].error).line == 1


async def test_raising_init_is_isolated(kernel_project: KernelProjectFactory) -> None:
    """A plugin whose __init__ raises is failed with the raising line; nothing registered."""
    root = kernel_project(
        {
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/a/plugins/init_plugin.py": """
            from microcore import Plugin

            class InitPlugin(Plugin):
                def __init__(self, registry):
                    raise RuntimeError("cannot construct")
            """,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        error = kernel.status().plugins["a.InitPlugin"].error
        assert error is not None
        assert (error.message, error.line) == ("cannot construct", 6)
        assert registry_of(kernel).visible() == ["good"]


async def test_on_boot_failing_halfway_leaves_nothing_registered(
    kernel_project: KernelProjectFactory,
) -> None:
    """Registrations made before on_boot raised are released; the plugin is failed."""
    root = kernel_project(
        {
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/a/plugins/half_plugin.py": """
            from microcore import Plugin

            class HalfPlugin(Plugin):
                def __init__(self, registry):
                    self.registry = registry

                async def on_boot(self):
                    self.registry.add("half-1")
                    self.registry.add("half-2")
                    raise RuntimeError("boot failed")
            """,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        registry = registry_of(kernel)
        assert registry.items == [(kernel.plugins["a.GoodPlugin"].owner, "good")]
        plugin = kernel.status().plugins["a.HalfPlugin"]
        assert plugin.status == "failed"
        assert "item" not in plugin.registrations
        error = present(plugin.error)
        assert (error.message, error.line) == ("boot failed", 11)


async def test_pending_registrations_are_invisible_until_commit(
    kernel_project: KernelProjectFactory,
) -> None:
    """During on_boot the plugin's items exist but are not visible; commit shows them."""
    root = kernel_project(
        {
            "domains/a/plugins/peek_plugin.py": """
            from microcore import Plugin

            class PeekPlugin(Plugin):
                def __init__(self, registry, recorder):
                    self.registry, self.recorder = registry, recorder

                async def on_boot(self):
                    self.registry.add("peek")
                    self.recorder.record(f"visible during boot: {self.registry.tool.visible()}")
            """
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert "visible during boot: []" in recorder_of(kernel).calls
        assert registry_of(kernel).visible() == ["peek"]


async def test_unload_removes_everything_the_plugin_registered(
    kernel_project: KernelProjectFactory,
) -> None:
    """Unloading a plugin calls its shutdown and releases all of its registrations."""
    root = kernel_project({"domains/a/plugins/good_plugin.py": GOOD})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        registry = registry_of(kernel)
        refreshes = registry.refreshes
        await kernel.unload("a.GoodPlugin")
        assert registry.items == []
        assert registry.refreshes == refreshes + 1
        assert "a.GoodPlugin" not in kernel.plugins
        assert "good.shutdown" in recorder_of(kernel).calls
        await kernel.unload("a.GoodPlugin")  # unknown now: a no-op


async def test_unload_of_failed_plugin_forgets_it(kernel_project: KernelProjectFactory) -> None:
    """A failed plugin's record disappears when it is unloaded."""
    root = kernel_project({"domains/a/plugins/broken_plugin.py": "raise ValueError('x')\n"})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        await kernel.unload("a.broken_plugin")
        assert kernel.plugins == {}


async def test_failed_tool_setup_fails_dependents_only(
    kernel_project: KernelProjectFactory,
) -> None:
    """A tool whose setup raises is failed; plugins needing it fail naming it; others boot."""
    root = kernel_project(
        {
            "tools/flaky/flaky_tool.py": """
            from microcore import Tool

            class FlakyTool(Tool):
                name = "flaky"

                async def setup(self):
                    raise ConnectionError("no server at 127.0.0.1:1")
            """,
            "tools/user/user_tool.py": """
            from microcore import Tool

            class UserTool(Tool):
                name = "user"

                def __init__(self, flaky):
                    self.flaky = flaky
            """,
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/a/plugins/needy_plugin.py": """
            from microcore import Plugin

            class NeedyPlugin(Plugin):
                def __init__(self, flaky):
                    pass
            """,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        status = kernel.status()
        assert status.tools["flaky"].status == "failed"
        assert present(status.tools["flaky"].error).message == "no server at 127.0.0.1:1"
        assert present(status.tools["flaky"].error).line == 8
        assert "needs tool 'flaky', which failed" in present(status.tools["user"].error).message
        needy = present(status.plugins["a.NeedyPlugin"].error).message
        assert needy.startswith("plugin 'a.NeedyPlugin' needs tool 'flaky', which failed to start")
        assert status.plugins["a.GoodPlugin"].status == "ok"
        assert kernel.failures() == {"tools": ["flaky", "user"], "plugins": ["a.NeedyPlugin"]}
        with pytest.raises(DependencyError, match="tool 'flaky' is failed"):
            kernel.tool("flaky")
        with pytest.raises(DependencyError, match="tool 'nope' is not registered"):
            kernel.tool("nope")


async def test_broken_tool_file_and_bad_tool_shapes_are_isolated(
    kernel_project: KernelProjectFactory,
) -> None:
    """Tool import errors, raising constructors, sync hooks and unknown deps fail one tool each."""
    root = kernel_project(
        {
            "tools/broken/broken_tool.py": "raise ImportError('missing driver')\n",
            "tools/ctor/ctor_tool.py": """
            from microcore import Tool

            class CtorTool(Tool):
                name = "ctor"

                def __init__(self):
                    raise RuntimeError("bad ctor")
            """,
            "tools/sync/sync_tool.py": """
            from microcore import Tool

            class SyncTool(Tool):
                name = "sync"

                def setup(self):
                    pass
            """,
            "tools/lonely/lonely_tool.py": """
            from microcore import Tool

            class LonelyTool(Tool):
                name = "lonely"

                def __init__(self, missing):
                    pass
            """,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        tools = kernel.status().tools
        assert present(tools["broken"].error).message == "missing driver"
        assert present(tools["ctor"].error).message == "bad ctor"
        assert "setup must be a coroutine function" in present(tools["sync"].error).message
        assert (
            "needs tool 'missing', which is not registered"
            in present(tools["lonely"].error).message
        )
        assert tools["recorder"].status == "ok"


async def test_failing_boot_complete_marks_tool_failed(
    kernel_project: KernelProjectFactory,
) -> None:
    """A tool whose on_boot_complete raises is reported failed; the app still runs."""
    root = kernel_project(
        {
            "tools/late/late_tool.py": """
            from microcore import Tool

            class LateTool(Tool):
                name = "late"

                async def on_boot_complete(self):
                    raise RuntimeError("late failure")
            """
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert kernel.failures()["tools"] == ["late"]


async def test_two_tools_with_one_name_refuse_to_start(
    kernel_project: KernelProjectFactory,
) -> None:
    """Two tools named alike is a configuration error naming both files."""
    root = kernel_project(
        {
            "tools/other/other_tool.py": """
            from microcore import Tool

            class Other(Tool):
                name = "recorder"
            """
        }
    )
    kernel = Kernel(root, environ={})
    with pytest.raises(ConfigurationError) as info:
        async with kernel.run():
            pass  # pragma: no cover - boot refuses
    assert str(info.value) == (
        "two tools are named 'recorder': tools/other/other_tool.py and "
        "tools/recorder/recorder_tool.py; rename one (tool names must be unique)"
    )


async def test_tool_without_name_refuses_to_start(kernel_project: KernelProjectFactory) -> None:
    """A Tool subclass without a name is a configuration error saying how to fix it."""
    root = kernel_project(
        {"tools/anon/anon_tool.py": "from microcore import Tool\nclass Anon(Tool):\n    pass\n"}
    )
    with pytest.raises(ConfigurationError, match=r"tool class Anon in tools/anon/anon_tool\.py"):
        async with Kernel(root, environ={}).run():
            pass  # pragma: no cover - boot refuses


async def test_tool_dependency_cycle_refuses_to_start(kernel_project: KernelProjectFactory) -> None:
    """Tools that need each other in a cycle stop the boot naming the cycle."""
    cyc = """
    from microcore import Tool

    class {cls}(Tool):
        name = "{name}"

        def __init__(self, {dep}):
            pass
    """
    root = kernel_project(
        {
            "tools/ping/ping_tool.py": cyc.format(cls="Ping", name="ping", dep="pong"),
            "tools/pong/pong_tool.py": cyc.format(cls="Pong", name="pong", dep="ping"),
        }
    )
    with pytest.raises(ConfigurationError, match="cycle: ping -> pong -> ping"):
        async with Kernel(root, environ={}).run():
            pass  # pragma: no cover - boot refuses


async def test_independent_tools_set_up_concurrently(kernel_project: KernelProjectFactory) -> None:
    """Two tools whose setups wait for each other both finish: they run at the same time."""
    tool = """
    import anyio
    from microcore import Tool

    class {cls}(Tool):
        name = "{name}"

        def __init__(self, kernel):
            self.kernel = kernel

        async def setup(self):
            events = self.kernel.settings.setdefault("_events", {{}})
            for key in ("left", "right"):
                events.setdefault(key, anyio.Event())
            events["{name}"].set()
            with anyio.fail_after(5):
                await events["{other}"].wait()
    """
    root = kernel_project(
        {
            "tools/left/left_tool.py": tool.format(cls="Left", name="left", other="right"),
            "tools/right/right_tool.py": tool.format(cls="Right", name="right", other="left"),
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert kernel.failures() == {"tools": [], "plugins": []}


async def test_hook_timeout_fails_a_hanging_on_boot(kernel_project: KernelProjectFactory) -> None:
    """An on_boot that never returns is failed after MICROCORE_HOOK_TIMEOUT."""
    root = kernel_project(
        {
            "domains/a/plugins/hang_plugin.py": """
            import anyio
            from microcore import Plugin

            class HangPlugin(Plugin):
                async def on_boot(self):
                    await anyio.sleep_forever()
            """
        }
    )
    kernel = Kernel(root, environ={"MICROCORE_HOOK_TIMEOUT": "0.05"})
    async with kernel.run():
        assert present(kernel.status().plugins["a.HangPlugin"].error).type == "TimeoutError"


async def test_bad_hook_timeout_setting_is_a_clear_error(
    kernel_project: KernelProjectFactory,
) -> None:
    """A malformed MICROCORE_HOOK_TIMEOUT names the key and the value."""
    kernel = Kernel(kernel_project(), environ={"MICROCORE_HOOK_TIMEOUT": "soon"})
    with pytest.raises(ConfigurationError, match="MICROCORE_HOOK_TIMEOUT must be a number"):
        async with kernel.run():
            pass  # pragma: no cover - boot refuses


async def test_failing_plugin_shutdown_and_release_are_isolated(
    kernel_project: KernelProjectFactory,
) -> None:
    """A raising shutdown or release is logged; the other plugins still shut down."""
    root = kernel_project(
        {
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/b/plugins/bad_plugin.py": """
            from microcore import Plugin

            class BadPlugin(Plugin):
                def __init__(self, registry):
                    self.registry = registry

                async def on_boot(self):
                    self.registry.owner.own("item", "x", self.explode)

                def explode(self):
                    raise RuntimeError("release failed")

                async def shutdown(self):
                    raise RuntimeError("shutdown failed")
            """,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        recorder = recorder_of(kernel)
    assert "good.shutdown" in recorder.calls
    assert recorder.calls[-1] == "recorder.shutdown"


async def test_start_background_runs_until_shutdown(kernel_project: KernelProjectFactory) -> None:
    """Tools can start background tasks that are cancelled at shutdown."""
    import anyio

    kernel = Kernel(kernel_project(), environ={})
    with pytest.raises(RuntimeError, match="not running"):
        kernel.start_background(anyio.sleep_forever)
    started = anyio.Event()

    async def worker() -> None:
        started.set()
        await anyio.sleep_forever()

    async with kernel.run():
        kernel.start_background(worker, name="worker")
        with anyio.fail_after(5):
            await started.wait()


async def test_staged_batch_serves_only_after_commit(kernel_project: KernelProjectFactory) -> None:
    """stage boots a new version under a pending owner; only commit makes it serve, and
    retire shuts the version it replaced down."""
    root = kernel_project({"domains/a/plugins/one_plugin.py": GOOD.replace("Good", "One")})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        path = root / "domains/a/plugins/one_plugin.py"
        old = kernel.plugins["a.OnePlugin"]
        batch = await kernel.stage([path])
        assert [r.owner.state.value for r in batch.new] == ["pending"]
        assert kernel.plugins["a.OnePlugin"] is old
        kernel.commit(batch)
        assert kernel.plugins["a.OnePlugin"] is batch.new[0]
        assert batch.new[0].owner.active and old.owner.released
        kernel.retire(batch)
        calls = recorder_of(kernel).calls
        await eventually(lambda: calls.count("good.shutdown") == 1)


async def test_plugin_file_without_plugin_is_skipped(kernel_project: KernelProjectFactory) -> None:
    """A *_plugin.py without a Plugin class loads nothing (and warns)."""
    root = kernel_project({"domains/a/plugins/empty_plugin.py": "X = 1\n"})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert kernel.plugins == {}


async def test_a_tool_refresh_error_is_isolated(kernel_project: KernelProjectFactory) -> None:
    """A tool whose on_plugins_changed raises does not stop a commit."""
    root = kernel_project(
        {
            "tools/picky/picky_tool.py": """
            from microcore import Tool

            class Picky(Tool):
                name = "picky"

                def on_plugins_changed(self):
                    raise RuntimeError("cannot refresh")
            """,
            "domains/a/plugins/good_plugin.py": GOOD,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert kernel.plugins["a.GoodPlugin"].owner.active


async def test_settings_read_dotenv_under_environment(kernel_project: KernelProjectFactory) -> None:
    """.env values apply unless the environment sets the same key."""
    root = kernel_project({".env": "A=from-dotenv\nB=from-dotenv\n"})
    kernel = Kernel(root, environ={"B": "from-env"}, overrides={"C": "override"})
    async with kernel.run():
        assert kernel.settings["A"] == "from-dotenv"
        assert kernel.settings["B"] == "from-env"
        assert kernel.settings["C"] == "override"
        assert kernel.tool("config").get("A") == "from-dotenv"  # type: ignore[attr-defined]


async def test_a_tools_bind_error_fails_only_that_plugin(
    kernel_project: KernelProjectFactory,
) -> None:
    """A tool whose bind() raises for a plugin fails that plugin with the tool's error."""
    root = kernel_project(
        {
            "tools/picky/picky_tool.py": """
            from microcore import Tool

            class Picky(Tool):
                name = "picky"

                def bind(self, owner):
                    raise LookupError(f"no quota for {owner.identity}")
            """,
            "domains/a/plugins/good_plugin.py": GOOD,
            "domains/a/plugins/needy_plugin.py": """
            from microcore import Plugin

            class NeedyPlugin(Plugin):
                def __init__(self, picky):
                    pass
            """,
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        error = kernel.status().plugins["a.NeedyPlugin"].error
        assert error is not None
        assert (error.type, error.message) == ("LookupError", "no quota for a.NeedyPlugin")
        assert kernel.plugins["a.GoodPlugin"].status == "ok"


async def test_errors_in_drain_and_shutdown_hooks_are_logged_not_fatal(
    kernel_project: KernelProjectFactory,
) -> None:
    """A tool raising in drain or shutdown does not stop the others from shutting down."""
    root = kernel_project(
        {
            "tools/messy/messy_tool.py": """
            from microcore import Tool

            class Messy(Tool):
                name = "messy"

                async def drain(self):
                    raise RuntimeError("cannot drain")

                async def shutdown(self):
                    raise RuntimeError("cannot shut down")
            """
        }
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        recorder = recorder_of(kernel)
    assert recorder.calls[-1] == "recorder.shutdown"
    assert kernel.tools["messy"].status == "ok"


async def test_several_background_failures_surface_together(
    kernel_project: KernelProjectFactory,
) -> None:
    """Two background tasks failing at once surface as one exception group."""
    import anyio

    async def fail(message: str) -> None:
        raise RuntimeError(message)

    kernel = Kernel(kernel_project(), environ={})
    with pytest.raises(BaseExceptionGroup) as info:
        async with kernel.run():
            kernel.start_background(fail, "one")
            kernel.start_background(fail, "two")
            await anyio.sleep_forever()
    assert sorted(str(e) for e in info.value.exceptions) == ["one", "two"]


async def test_unloading_a_plugin_that_never_booted_only_forgets_it(
    kernel_project: KernelProjectFactory,
) -> None:
    """Unloading a failed plugin removes it from status and calls no shutdown hook."""
    root = kernel_project({"domains/a/plugins/broken_plugin.py": "raise ValueError('x')\n"})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        record = kernel.plugins["a.broken_plugin"]
        await kernel.unload("a.broken_plugin")
        assert record.owner.released
        assert "a.broken_plugin" not in kernel.plugins
        calls = recorder_of(kernel).calls
        assert not [c for c in calls if "shutdown" in c]


def test_line_of_a_class_without_source_is_unknown() -> None:
    """Classes made at run time have no source line; errors then carry none."""
    from microcore._core.lifecycle import _line_of

    made = type("Made", (), {})
    assert _line_of(made, RuntimeError("x")) is None


async def test_a_failing_tools_package_fails_every_tool_import(
    kernel_project: KernelProjectFactory,
) -> None:
    """A tools/__init__.py that raises fails the tool files, and is not left half-imported."""
    import sys

    root = kernel_project({"tools/__init__.py": "raise RuntimeError('bad package')\n"})
    kernel = Kernel(root, environ={})
    async with kernel.run():
        assert kernel.tools["recorder"].error.message == "bad package"  # type: ignore[union-attr]
    assert "tools" not in sys.modules or "bad package" not in repr(sys.modules.get("tools"))


HOSTING_TOOL = """
from microcore import Tool
from microcore.tooling import PluginStatus


def _hosted(status):
    return PluginStatus(
        status=status, error=None, reload_error=None, file="domains/a/plugins/x.txt",
        domain="a", tools=[], registrations={}, loaded_at=None, details={"pid": 7},
    )


class Hosting(Tool):
    name = "hosting"

    def hosted_plugins(self):
        return {
            "a.zz_ok": _hosted("ok"),
            "a.down": _hosted("failed"),
            "a.GoodPlugin": _hosted("failed"),
        }


class Broken(Tool):
    name = "broken"

    def hosted_plugins(self):
        raise RuntimeError("cannot report")
"""


async def test_hosted_plugins_show_in_status_and_health(
    kernel_project: KernelProjectFactory,
) -> None:
    """Plugins a tool runs itself are listed in status (sorted, with their details) and a
    failed one counts in failures; the kernel's own plugin wins a shared identity, and a
    tool whose report raises is left out."""
    root = kernel_project(
        {"tools/hosting/hosting_tool.py": HOSTING_TOOL, "domains/a/plugins/good_plugin.py": GOOD}
    )
    kernel = Kernel(root, environ={})
    async with kernel.run():
        plugins = kernel.status().plugins
        assert list(plugins) == ["a.GoodPlugin", "a.down", "a.zz_ok"]
        assert plugins["a.GoodPlugin"].status == "ok"
        assert plugins["a.zz_ok"].details == {"pid": 7}
        assert kernel.failures()["plugins"] == ["a.down"]
