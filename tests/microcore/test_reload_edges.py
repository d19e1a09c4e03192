"""Hot reload at its edges: a half-broken new version, requests in flight on the old one,
and a reload caught by shutdown. Each leaves nothing running that should not be."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import httpx
import structlog.testing

from microcore._app import running
from microcore._dev.reload import Reloader
from microcore.testing import Kernel, start_app
from tests.conftest import ProjectFactory
from tests.microcore.conftest import KernelProjectFactory, registry_of
from tests.support import eventually

PROBE = """
calls = []
"""

TWO_CLASSES = """
from microcore import Plugin
from domains.a import probe

class GoodPlugin(Plugin):
    def __init__(self, registry):
        self.registry = registry

    async def on_boot(self):
        probe.calls.append("Good.boot:{version}")
        self.registry.add("good-{version}")

    async def shutdown(self):
        probe.calls.append("Good.shutdown:{version}")


class OtherPlugin(Plugin):
    def __init__(self, registry):
        self.registry = registry

    async def on_boot(self):
        {other_boot}

    async def shutdown(self):
        probe.calls.append("Other.shutdown:{version}")
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_discarded_new_version_that_booted_is_shut_down(
    kernel_project: KernelProjectFactory,
) -> None:
    """When a file's new version is partly broken the old one keeps serving, and the new
    plugins that did boot are shut down (whatever their on_boot started does not leak)."""
    ok = 'probe.calls.append("Other.boot:1")'
    project = kernel_project(
        {
            "domains/a/__init__.py": "",
            "domains/a/probe.py": PROBE,
            "domains/a/plugins/pair_plugin.py": TWO_CLASSES.format(version=1, other_boot=ok),
        }
    )
    kernel = Kernel(project, environ={})
    async with kernel.run():
        probe = sys.modules["domains.a.probe"]
        path = _write(
            project / "domains/a/plugins/pair_plugin.py",
            TWO_CLASSES.format(version=2, other_boot='raise RuntimeError("broken v2")'),
        )
        report = await Reloader(kernel).apply([path])
        assert report.failed  # the old version keeps serving
        assert registry_of(kernel).visible() == ["good-1"]
        assert "Good.boot:2" in probe.calls  # the new GoodPlugin booted...
        assert "Good.shutdown:2" in probe.calls  # ...and must be shut down when discarded


SERVICE = """
import anyio
from microcore import Plugin
from domains.d import probe

class ServicePlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.client = {{"open": True, "version": {version}}}  # e.g. an httpx client / pool
        self.http.add_endpoint("/work", "GET", self.work)

    async def shutdown(self):
        self.client["open"] = False  # e.g. await self.client.aclose()

    async def work(self, data, context):
        probe.entered.set()
        await probe.release.wait()
        if not self.client["open"]:
            raise RuntimeError("client is closed")
        return {{"version": self.client["version"]}}
"""


async def test_in_flight_request_on_old_version_outlives_its_shutdown(
    make_project: ProjectFactory,
) -> None:
    """A request in flight on the old version finishes on it with its resources still open:
    the old version shuts down only afterwards, and the reload does not wait for it."""
    root = make_project(
        {
            "domains/d/__init__.py": "",
            "domains/d/probe.py": SERVICE_PROBE,
            "domains/d/plugins/service_plugin.py": SERVICE.format(version=1),
        },
        tools=["config", "logger", "http"],
    )
    running = await start_app(root)
    try:
        probe = sys.modules["domains.d.probe"]
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            result: dict[str, object] = {}

            async def old_request() -> None:
                response = await client.get("/work")
                result.update(status=response.status_code, body=response.json())

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(old_request)
                    await probe.entered.wait()
                    path = _write(
                        root / "domains/d/plugins/service_plugin.py", SERVICE.format(version=2)
                    )
                    report = await Reloader(running.kernel).apply([path])
                    assert report.loaded == ["d.ServicePlugin"]
                    probe.release.set()
            assert result == {"status": 200, "body": {"version": 1}}
    finally:
        await running.stop()


SERVICE_PROBE = "import anyio\nentered = anyio.Event()\nrelease = anyio.Event()\n"
RACE_PROBE = "import anyio\ncalls = []\nbooting = anyio.Event()\ngo = anyio.Event()\n"

RACE_V1 = """
from microcore import Plugin
from domains.a import probe

class OnePlugin(Plugin):
    def __init__(self, registry):
        self.registry = registry

    async def on_boot(self):
        self.registry.add("one-v1")

    async def shutdown(self):
        probe.calls.append("shutdown:v1")
        probe.go.set()
"""

RACE_V2 = """
from microcore import Plugin
from domains.a import probe

class OnePlugin(Plugin):
    def __init__(self, registry):
        self.registry = registry

    async def on_boot(self):
        probe.booting.set()
        await probe.go.wait()  # e.g. connecting somewhere while the server shuts down
        self.registry.add("one-v2")
        probe.calls.append("boot:v2")

    async def shutdown(self):
        probe.calls.append("shutdown:v2{n}")
"""


async def test_reload_in_progress_during_shutdown_is_not_committed_after_it(
    kernel_project: KernelProjectFactory,
) -> None:
    """Shutdown cuts a reload in progress short: nothing it booted is committed or left
    loaded, and the old version is shut down exactly once."""
    project = kernel_project(
        {
            "domains/a/__init__.py": "",
            "domains/a/probe.py": RACE_PROBE,
            "domains/a/plugins/one_plugin.py": RACE_V1,
        }
    )
    kernel = Kernel(project, environ={"MICROCORE_RELOAD": "1"})
    with anyio.fail_after(30):
        async with running(kernel):
            probe = sys.modules["domains.a.probe"]
            path = project / "domains/a/plugins/one_plugin.py"
            n = 0
            while not probe.booting.is_set():  # rewrite until the watcher has picked it up
                n += 1
                path.write_text(RACE_V2.format(n=n))
                with anyio.move_on_after(1):
                    await probe.booting.wait()
        # kernel.run() has returned: shutdown is complete
    leftover = {k: r.owner.state.value for k, r in kernel.plugins.items()}
    assert leftover == {}, f"plugins still loaded after shutdown: {leftover}; calls {probe.calls}"
    assert probe.calls.count("shutdown:v1") == 1, probe.calls


async def test_old_version_busy_past_the_hook_timeout_is_shut_down_anyway(
    make_project: ProjectFactory,
) -> None:
    """A call on the old version that outlasts MICROCORE_HOOK_TIMEOUT does not keep it
    alive forever: it is shut down then, with a warning naming it."""
    root = make_project(
        {
            "domains/d/__init__.py": "",
            "domains/d/probe.py": SERVICE_PROBE,
            "domains/d/plugins/service_plugin.py": SERVICE.format(version=1),
        },
        tools=["config", "logger", "http"],
    )
    running = await start_app(root, settings={"MICROCORE_HOOK_TIMEOUT": "0.2"})
    try:
        probe = sys.modules["domains.d.probe"]
        result: dict[str, object] = {}
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def request() -> None:
                response = await client.get("/work")
                result.update(status=response.status_code)

            with structlog.testing.capture_logs() as logs, anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(request)
                    await probe.entered.wait()
                    path = root / "domains/d/plugins/service_plugin.py"
                    _write(path, SERVICE.format(version=2))
                    await Reloader(running.kernel).apply([path])
                    await eventually(
                        lambda: any(e["event"] == "plugin_shutdown_while_busy" for e in logs)
                    )
                    probe.release.set()
        (warning,) = [e for e in logs if e["event"] == "plugin_shutdown_while_busy"]
        assert (warning["plugin"], warning["calls"]) == ("d.ServicePlugin", 1)
        assert result == {"status": 500}  # its client was closed under it, as warned
    finally:
        await running.stop()


async def test_shutdown_waits_for_a_swapped_out_version_still_serving(
    make_project: ProjectFactory,
) -> None:
    """Stopping the app right after a reload lets the old version finish its request
    before anything shuts down."""
    root = make_project(
        {
            "domains/d/__init__.py": "",
            "domains/d/probe.py": SERVICE_PROBE,
            "domains/d/plugins/service_plugin.py": SERVICE.format(version=1),
        },
        tools=["config", "logger", "http"],
    )
    running = await start_app(root)
    probe = sys.modules["domains.d.probe"]
    result: dict[str, object] = {}
    transport = httpx.ASGITransport(app=running.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

        async def request() -> None:
            response = await client.get("/work")
            result.update(status=response.status_code, body=response.json())

        with structlog.testing.capture_logs() as logs, anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(request)
                await probe.entered.wait()
                path = root / "domains/d/plugins/service_plugin.py"
                _write(path, SERVICE.format(version=2))
                await Reloader(running.kernel).apply([path])
                tg.start_soon(running.stop)
                await eventually(lambda: any(e["event"] == "shutdown_started" for e in logs))
                probe.release.set()
    assert result == {"status": 200, "body": {"version": 1}}
    events = [e["event"] for e in logs]
    assert events.index("shutdown_started") < events.index("shutdown_complete")


async def test_a_closed_reloader_applies_nothing(kernel_project: KernelProjectFactory) -> None:
    """After close() (shutdown), a late apply() changes nothing."""
    project = kernel_project(
        {
            "domains/a/__init__.py": "",
            "domains/a/probe.py": RACE_PROBE,
            "domains/a/plugins/one_plugin.py": RACE_V1,
        }
    )
    kernel = Kernel(project, environ={})
    async with kernel.run():
        reloader = Reloader(kernel)
        await reloader.close()
        path = project / "domains/a/plugins/one_plugin.py"
        path.write_text(RACE_V2.format(n=1))
        report = await reloader.apply([path])
        assert (report.loaded, report.failed) == ([], {})
        assert registry_of(kernel).visible() == ["one-v1"]
