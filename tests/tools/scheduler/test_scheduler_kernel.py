"""The scheduler booted in a real project: jobs owned by plugins across boot, reload, unload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from microcore.testing import EventRecorder, Kernel, record_events, start_app
from tests.conftest import ProjectFactory
from tests.support import eventually, present
from tests.tools.scheduler.conftest import START, FakeClock

TOOLS = ["config", "logger", "state", "event_bus", "scheduler"]
FILE = "domains/a/plugins/tick_plugin.py"

GATE_TOOL = """
import anyio
from microcore import Tool

class GateTool(Tool):
    '''Holds a job until the test opens it.'''

    name = "gate"

    def __init__(self):
        self.opened = anyio.Event()

    async def wait(self):
        await self.opened.wait()
"""

TICK = """
import contextlib

from microcore import Plugin
from tools.event_bus import BusClosed, EventBus
from tools.scheduler import Scheduler

class TickPlugin(Plugin):
    def __init__(self, scheduler: Scheduler, event_bus: EventBus, gate):
        self.scheduler, self.bus, self.gate = scheduler, event_bus, gate

    async def on_boot(self):
        self.scheduler.every(1, self.tick)
        self.scheduler.run(self.feed)

    async def tick(self):
        await self.bus.publish("tick.started", {"version": VERSION})
        if HOLD:
            await self.gate.wait()
        await self.bus.publish("tick.finished", {"version": VERSION})

    async def feed(self):
        await self.bus.publish("feed.started", {"version": VERSION})
        await self.gate.wait()

    async def shutdown(self):
        with contextlib.suppress(BusClosed):  # the app's own shutdown closed the bus first
            await self.bus.publish("tick.shutdown", {"version": VERSION})
"""


def tick(version: int, *, hold: bool = False) -> str:
    return f"VERSION = {version}\nHOLD = {hold}\n{TICK}"


@dataclass
class Project:
    root: Path
    kernel: Kernel
    scheduler: Any
    clock: FakeClock
    events: EventRecorder

    async def load(self, text: str) -> None:
        """Write the plugin file and stage, commit and retire it, as a hot reload does."""
        path = self.root / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        batch = await self.kernel.stage([path])
        self.kernel.commit(batch)
        self.kernel.retire(batch)

    def payloads(self, name: str) -> list[tuple[str, int]]:
        return [(e.source, e.payload["version"]) for e in self.events.published if e.name == name]


@pytest.fixture
async def project(make_project: ProjectFactory) -> AsyncIterator[Project]:
    """A running project with the scheduler on a fake clock, and no plugin yet."""
    root = make_project({"tools/gate/gate_tool.py": GATE_TOOL}, tools=TOOLS)
    running = await start_app(root)
    try:
        kernel = running.kernel
        scheduler = kernel.tool("scheduler")
        clock = FakeClock()
        scheduler.clock = clock  # type: ignore[attr-defined]
        events, detach = record_events(kernel)
        try:
            yield Project(root, kernel, scheduler, clock, events)
        finally:
            detach()
    finally:
        await running.stop()


async def _tick(project: Project, due: float) -> None:
    """Wait until the job sleeps until ``due`` and move the clock there."""
    clock = project.clock
    await eventually(lambda: clock.sleeping_until(due))
    clock.advance(due - clock.now())


async def test_kernel_jobs_publish_as_their_plugin(project: Project) -> None:
    """A job's events come from its plugin; status lists the plugin's jobs."""
    await project.load(tick(1))
    await _tick(project, START + 1)
    await project.events.wait_for("tick.finished")
    assert project.payloads("tick.finished") == [("a.TickPlugin", 1)]
    started = await project.events.wait_for("tick.started")
    feed = await project.events.wait_for("feed.started")
    assert started.source == feed.source == "a.TickPlugin"
    status = project.kernel.status().plugins["a.TickPlugin"]
    assert status.registrations.get("job", []) == ["tick (every 1s)", "feed (run)"]
    assert [(j.owner, j.name, j.schedule) for j in project.scheduler.jobs()] == [
        ("a.TickPlugin", "feed", "run"),
        ("a.TickPlugin", "tick", "every 1s"),
    ]


async def test_kernel_reload_leaves_no_duplicate_and_unload_no_orphan(project: Project) -> None:
    """After a reload one job runs, on the new code; after an unload none does."""
    await project.load(tick(1))
    await _tick(project, START + 1)
    await eventually(lambda: len(project.payloads("tick.finished")) == 1)
    await project.load(tick(2))
    await eventually(lambda: ("a.TickPlugin", 1) in project.payloads("tick.shutdown"))
    assert project.payloads("feed.started") == [("a.TickPlugin", 1), ("a.TickPlugin", 2)]
    await _tick(project, START + 2)
    await eventually(lambda: len(project.payloads("tick.finished")) == 2)
    await _tick(project, START + 3)
    await eventually(lambda: len(project.payloads("tick.finished")) == 3)
    assert project.payloads("tick.finished") == [("a.TickPlugin", v) for v in (1, 2, 2)]
    assert [j.name for j in project.scheduler.jobs()] == ["feed", "tick"]
    assert [j.runs for j in project.scheduler.jobs() if j.name == "tick"] == [3]

    await project.kernel.unload("a.TickPlugin")
    assert project.scheduler.jobs() == []
    await eventually(lambda: project.clock.waiting == [])
    project.clock.advance(10)
    assert len(project.payloads("tick.started")) == 3


async def test_kernel_run_in_progress_finishes_on_the_old_code(project: Project) -> None:
    """A run going during a reload finishes on the old version, which then shuts down; the
    new version skips the due time it would have stacked on it."""
    await project.load(tick(1, hold=True))
    await _tick(project, START + 1)
    await project.events.wait_for("tick.started")
    await project.load(tick(2, hold=True))
    await _tick(project, START + 2)
    await eventually(lambda: project.scheduler.jobs()[1].skips == 1)
    assert project.payloads("tick.shutdown") == []  # the old version still runs its job
    gate: Any = project.kernel.tool("gate")
    gate.opened.set()
    await eventually(lambda: ("a.TickPlugin", 1) in project.payloads("tick.shutdown"))
    assert project.payloads("tick.finished") == [("a.TickPlugin", 1)]
    await _tick(project, START + 3)
    await eventually(lambda: ("a.TickPlugin", 2) in project.payloads("tick.finished"))


async def test_kernel_bad_cron_fails_the_plugin_quoting_it(project: Project) -> None:
    """A malformed cron expression fails the plugin at on_boot, quoting the expression; the
    plugin leaves no job behind."""
    bad = TICK.replace(
        "self.scheduler.every(1, self.tick)", 'self.scheduler.cron("61 * * * *", self.tick)'
    )
    with structlog.testing.capture_logs():
        await project.load(f"VERSION = 1\nHOLD = False\n{bad}")
    status = project.kernel.status().plugins["a.TickPlugin"]
    assert status.status == "failed"
    assert present(status.error).type == "ScheduleError"
    assert "cron expression '61 * * * *' is not valid: Bad minute" in present(status.error).message
    assert project.scheduler.jobs() == []
    assert project.clock.waiting == []


PROBE_TOOL = """
from microcore import Tool

class ProbeTool(Tool):
    '''Counts the runs the test looks at.'''

    name = "probe"

    def __init__(self):
        self.started = {"quick": 0, "stuck": 0}
        self.finished = {"quick": 0, "stuck": 0}
"""

SLOW = """
import anyio
from microcore import Plugin
from tools.scheduler import Scheduler

class SlowPlugin(Plugin):
    def __init__(self, scheduler: Scheduler, probe):
        self.scheduler, self.probe = scheduler, probe

    async def on_boot(self):
        self.scheduler.every(0.05, self.quick)
        self.scheduler.every(0.05, self.stuck)

    async def quick(self):
        self.probe.started["quick"] += 1
        await anyio.sleep(0.4)
        self.probe.finished["quick"] += 1

    async def stuck(self):
        self.probe.started["stuck"] += 1
        await anyio.sleep_forever()
"""


async def test_kernel_shutdown_waits_for_runs_and_reports_what_it_cut(
    make_project: ProjectFactory,
) -> None:
    """App shutdown lets a run in progress finish within SCHEDULER_DRAIN_TIMEOUT; a run still
    going at the deadline is cancelled and logged (``scheduler_job_cut``, naming plugin and
    job); shutdown takes the deadline, not forever."""
    root = make_project(
        {"tools/probe/probe_tool.py": PROBE_TOOL, "domains/a/plugins/slow_plugin.py": SLOW},
        tools=TOOLS,
    )
    running = await start_app(root, settings={"SCHEDULER_DRAIN_TIMEOUT": "1"})
    probe: Any = running.kernel.tool("probe")
    try:
        await eventually(
            lambda: (
                probe.started["stuck"] == 1 and probe.started["quick"] > probe.finished["quick"]
            ),  # a quick run is going
            timeout=10,
        )
    except BaseException:
        await running.stop()
        raise
    with structlog.testing.capture_logs() as logs:
        began = anyio.current_time()
        await running.stop()
        took = anyio.current_time() - began
    assert probe.finished["quick"] == probe.started["quick"]  # finished, not cut
    cut = [(e["plugin"], e["job"]) for e in logs if e["event"] == "scheduler_job_cut"]
    assert cut == [("a.SlowPlugin", "stuck")]
    assert probe.finished["stuck"] == 0
    assert 1.0 <= took < 10


async def test_kernel_plugin_failing_after_registering_leaves_no_job(project: Project) -> None:
    """A plugin whose on_boot raises after registering jobs fails; its jobs never start."""
    failing = TICK.replace(
        "self.scheduler.run(self.feed)",
        'self.scheduler.run(self.feed)\n        raise RuntimeError("no partner credentials")',
    )
    with structlog.testing.capture_logs():
        await project.load(f"VERSION = 1\nHOLD = False\n{failing}")
    status = project.kernel.status().plugins["a.TickPlugin"]
    assert status.status == "failed"
    assert present(status.error).message == "no partner credentials"
    assert project.scheduler.jobs() == []
    project.clock.advance(5)
    await project.load(tick(2))  # fixed: the new version's jobs run, the failed one's never did
    await _tick(project, START + 6)
    await eventually(lambda: len(project.payloads("tick.finished")) == 1)
    assert project.payloads("feed.started") == [("a.TickPlugin", 2)]
    assert project.payloads("tick.finished") == [("a.TickPlugin", 2)]
