"""Setting the scheduler up: the real clock, and a shared store it needs but cannot use."""

from __future__ import annotations

import time

import anyio
import structlog

from microcore.testing import start_app
from tests.conftest import ProjectFactory
from tests.support import eventually, present
from tests.tools.scheduler.conftest import START, FakeClock, Recorder, plugin, running_scheduler
from tools.scheduler._clock import SystemClock
from tools.scheduler._lease import Lease


async def test_system_clock_reads_wall_time_and_waits_for_it() -> None:
    """The real clock is epoch time; waiting for a past moment returns at once."""
    clock = SystemClock()
    before = time.time()
    assert before <= clock.now() <= time.time()
    with anyio.fail_after(1):
        await clock.sleep_until(before - 10)
        await clock.sleep_until(clock.now() + 0.01)
    assert clock.now() >= before + 0.01
    async with running_scheduler() as tool:
        assert isinstance(tool.clock, FakeClock)


async def test_scheduler_without_a_reachable_shared_store_fails_clearly(
    make_project: ProjectFactory,
) -> None:
    """STATE_URL names Redis but the store does not answer: the scheduler fails saying why,
    instead of running every job once per replica."""
    root = make_project({}, tools=["config", "logger", "state", "scheduler"])
    with structlog.testing.capture_logs():
        running = await start_app(root, settings={"STATE_URL": "redis://127.0.0.1:1/0"})
    try:
        tool = running.kernel.status().tools["scheduler"]
        assert tool.status == "failed"
        assert "needs the shared state store" in present(tool.error).message
    finally:
        await running.stop()


async def test_scheduler_without_a_state_tool_refuses_a_shared_store(
    make_project: ProjectFactory,
) -> None:
    """STATE_URL names a shared store but the project has no state tool: refused, saying so
    (the password never shows)."""
    root = make_project({}, tools=["config", "logger", "scheduler"])
    with structlog.testing.capture_logs():
        running = await start_app(root, settings={"STATE_URL": "redis://app:s3cret@host:6379/0"})
    try:
        message = present(running.kernel.status().tools["scheduler"].error).message
        assert (
            "STATE_URL='host:6379/0' is shared by replicas, but there is no state tool" in message
        )
        assert "s3cret" not in message
    finally:
        await running.stop()


class FlakyStore:
    """A state store whose running key another replica takes, or that breaks, on demand."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.broken = False
        self.renewals = 0

    async def claim(
        self, namespace: str, key: str, ttl: float, *, holder: str | None = None
    ) -> bool:
        if self.broken:
            raise ConnectionError("store went away")
        mine = True if holder is None else holder
        held = self.values.get(key)
        if held is not None and (holder is None or held != mine):
            return False
        if held is not None:
            self.renewals += 1
        self.values[key] = mine
        return True

    async def release(self, namespace: str, key: str, holder: str) -> bool:
        if self.broken:
            raise ConnectionError("store went away")
        if self.values.get(key) != holder:
            return False
        del self.values[key]
        return True


async def test_lease_renewal_and_release_problems_are_logged() -> None:
    """A renewal that fails is logged and retried; a lease another replica took is logged
    as lost; a release that fails is logged (the key expires anyway); the run goes on."""
    clock = FakeClock()
    store = FlakyStore()
    async with running_scheduler(clock=clock) as tool:
        tool._engine.lease = Lease(store, 0.03)  # type: ignore[arg-type]
        scheduler, _ = plugin(tool)
        job = Recorder(hold=True)
        scheduler.every(1, job)
        await eventually(lambda: clock.sleeping_until(START + 1))
        with structlog.testing.capture_logs() as logs:
            clock.advance(1)
            await eventually(lambda: store.renewals >= 1)
            store.broken = True
            await eventually(lambda: "scheduler_lease_renew_failed" in [e["event"] for e in logs])
            store.broken = False
            store.values["shop.JobsPlugin/recorder#running"] = "another-replica"
            await eventually(lambda: "scheduler_lease_lost" in [e["event"] for e in logs])
            store.broken = True
            job.release_gate()
            await eventually(lambda: "scheduler_lease_release_failed" in [e["event"] for e in logs])
        assert job.finished == 1 and tool.jobs()[0].failures == 0
