"""Once per cluster: two schedulers on one Redis run each due time exactly once, never two
runs of a job at a time, and a replica that dies mid-run blocks the job for one lease at most.

Both replicas read one fake clock, so they wake for the same due times; the lease keys
expire on Redis's own (real) clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import structlog

from microcore.testing import RunningApp, record_events, start_app
from tests.conftest import ProjectFactory
from tests.support import eventually
from tests.tools.scheduler.conftest import (
    START,
    FakeClock,
    Recorder,
    plugin,
    running_scheduler,
    running_state,
)
from tests.tools.scheduler.test_scheduler_kernel import FILE, GATE_TOOL, TOOLS, tick
from tools.scheduler import Scheduler
from tools.scheduler._lease import NAMESPACE, Claim, Lease
from tools.scheduler.scheduler_tool import SchedulerTool
from tools.state import State


class Replica:
    """One scheduler with its own connection to the shared store, and the plugin's job."""

    def __init__(self, name: str, tool: SchedulerTool, state: State, stack: AsyncExitStack):
        self.name, self.tool, self.state, self.stack = name, tool, state, stack
        self.scheduler: Scheduler = plugin(tool)[0]

    @property
    def lease(self) -> Lease:
        lease = self.tool._engine.lease
        assert lease is not None
        return lease


@asynccontextmanager
async def two_replicas(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[FakeClock, list[Replica]]]:
    """Two replicas on one Redis and one prefix, sharing a fake clock; lease 0.5 s.

    (A context manager, not a fixture: task groups must be left in the task that entered
    them.)"""
    settings = {"STATE_URL": redis_url, "STATE_PREFIX": redis_prefix, "SCHEDULER_LEASE": "0.5"}
    clock = FakeClock()
    async with AsyncExitStack() as outer:
        replicas = []
        for name in ("a", "b"):
            stack = await outer.enter_async_context(AsyncExitStack())
            state = await stack.enter_async_context(running_state(settings))
            tool = await stack.enter_async_context(
                running_scheduler(settings, state=state, clock=clock)
            )
            replicas.append(Replica(name, tool, state, stack))
        yield clock, replicas


async def _both_asleep_until(clock: FakeClock, due: float) -> None:
    await eventually(lambda: clock.waiting.count(due) == 2)


async def test_cluster_runs_each_due_time_exactly_once(redis_url: str, redis_prefix: str) -> None:
    """Over 30 due times, each runs on exactly one of the two replicas."""
    async with two_replicas(redis_url, redis_prefix) as (clock, replicas):
        runs: list[tuple[str, float]] = []
        for replica in replicas:

            async def job(name: str = replica.name) -> None:
                runs.append((name, clock.now()))

            replica.scheduler.every(1, job, name="job")
        for step in range(1, 31):
            await _both_asleep_until(clock, START + step)
            clock.advance(1)
        await _both_asleep_until(clock, START + 31)
        assert sorted(due for _, due in runs) == [START + step for step in range(1, 31)]
        stats = [r.tool.jobs()[0] for r in replicas]
        assert sum(s.runs for s in stats) == 30 and sum(s.skips for s in stats) == 0


async def test_cluster_never_runs_a_job_twice_at_a_time(redis_url: str, redis_prefix: str) -> None:
    """While one replica's run goes on (renewing its lease past the lease time), the other
    skips the due times it claims; after the run ends the job runs again."""
    async with two_replicas(redis_url, redis_prefix) as (clock, (first, second)):
        jobs = {first.name: Recorder(hold=True), second.name: Recorder(hold=True)}
        for replica in (first, second):
            replica.scheduler.every(1, jobs[replica.name], name="job")
        await _both_asleep_until(clock, START + 1)
        clock.advance(1)
        await eventually(lambda: sum(j.calls for j in jobs.values()) == 1)
        running = next(r for r in (first, second) if jobs[r.name].calls == 1)
        idle = second if running is first else first
        renewals: list[bool] = []
        renew = running.lease.renew

        async def counted(job: str, token: str) -> bool:
            renewals.append(await renew(job, token))
            return renewals[-1]

        running.lease.renew = counted  # type: ignore[method-assign]
        await eventually(lambda: len(renewals) >= 4)  # > 0.5 s: held only by renewal
        for step in (2, 3):
            await eventually(lambda: clock.sleeping_until(START + step))  # noqa: B023 - awaited here
            clock.advance(1)
            await eventually(lambda: idle.tool.jobs()[0].skips == step - 1)  # noqa: B023
        assert jobs[idle.name].calls == 0 and all(renewals)
        jobs[running.name].release_gate()
        jobs[idle.name].release_gate()
        await _both_asleep_until(clock, START + 4)
        assert await running.state.get(NAMESPACE, "shop.JobsPlugin/job#running") is None
        clock.advance(1)
        await eventually(lambda: sum(j.finished for j in jobs.values()) == 2)


async def test_cluster_replica_dying_mid_run_blocks_one_lease_at_most(
    redis_url: str, redis_prefix: str
) -> None:
    """A replica that dies mid-run (no renewal, no release: what SIGKILL leaves in the store)
    holds the job until its lease expires; then the other replica runs it again."""
    async with two_replicas(redis_url, redis_prefix) as (clock, (first, second)):
        hold, work = Recorder(hold=True), Recorder()
        registration = first.scheduler.every(1, hold, name="job")
        await eventually(lambda: clock.sleeping_until(START + 1))
        clock.advance(1)  # only the first replica has the job yet: it runs it, and hangs
        await eventually(lambda: hold.calls == 1)

        async def never_renews(job: str, token: str) -> bool:
            await anyio.sleep_forever()
            return True  # pragma: no cover - never reached

        async def never_releases(job: str, token: str) -> None:
            return None

        first.lease.renew = never_renews  # type: ignore[method-assign]
        first.lease.release = never_releases  # type: ignore[method-assign]
        with structlog.testing.capture_logs():
            await registration.release()  # the run dies; its lease stays behind, unrenewed
        killed = anyio.current_time()
        second.scheduler.every(1, work, name="job")
        while work.calls == 0:
            due = clock.now() + 1
            await eventually(lambda: clock.sleeping_until(due))  # noqa: B023 - awaited here
            clock.advance(1)
            await eventually(lambda: clock.sleeping_until(due + 1))  # noqa: B023
        assert anyio.current_time() - killed < 0.5 + 2.0  # one lease, plus generous slack
        assert second.tool.jobs()[0].skips >= 1


async def test_cluster_lease_claims_and_frees(redis_url: str, redis_prefix: str) -> None:
    """claim: the first replica wins a due time, the next finds it taken; a held job makes a
    new due time busy; release frees it, but only for the holder."""
    settings = {"STATE_URL": redis_url, "STATE_PREFIX": redis_prefix}
    async with running_state(settings) as state:
        one, two = Lease(state, 5.0), Lease(state, 5.0)
        token = await one.claim("p/job", START)
        assert isinstance(token, str)
        assert await two.claim("p/job", START) is Claim.TAKEN
        assert await two.claim("p/job", START + 1) is Claim.BUSY
        await two.release("p/job", "someone-else")
        assert await state.get(NAMESPACE, "p/job#running") == token
        assert await two.renew("p/job", "someone-else") is False
        assert await one.renew("p/job", token) is True
        await one.release("p/job", token)
        assert isinstance(await two.claim("p/job", START + 2), str)


async def test_cluster_store_down_fails_the_run_not_the_scheduler() -> None:
    """When the shared store cannot be reached, the due time is not run (it might run
    elsewhere) and the failure is counted and logged."""
    clock = FakeClock()

    class DownState:
        async def claim(
            self, namespace: str, key: str, ttl: float, *, holder: str | None = None
        ) -> bool:
            raise ConnectionError("redis is down")

    async with running_scheduler(clock=clock) as tool:
        tool._engine.lease = Lease(DownState(), 1.0)  # type: ignore[arg-type]
        scheduler, _ = plugin(tool)
        job = Recorder()
        scheduler.every(1, job)
        await eventually(lambda: clock.sleeping_until(START + 1))
        with structlog.testing.capture_logs() as logs:
            clock.advance(1)
            await eventually(lambda: clock.sleeping_until(START + 2))
        [stats] = tool.jobs()
        assert (job.calls, stats.failures, stats.runs) == (0, 1, 0)
        assert stats.last_error == "lease: ConnectionError: redis is down"
        assert [e["event"] for e in logs] == ["scheduler_lease_failed"]


async def test_cluster_two_apps_on_one_redis_publish_each_tick_once(
    make_project: ProjectFactory, redis_url: str, redis_prefix: str
) -> None:
    """Two booted apps (replicas of one project on one Redis) with the same plugin: each due
    time's job runs, and publishes, on one of them only."""
    root = make_project({"tools/gate/gate_tool.py": GATE_TOOL}, tools=TOOLS)
    settings = {"STATE_URL": redis_url, "STATE_PREFIX": redis_prefix}
    apps: list[RunningApp] = []
    detachers: list[Callable[[], object]] = []
    try:
        for _ in range(2):
            apps.append(await start_app(root, settings=settings))
        clock = FakeClock()
        recorders = []
        for running in apps:
            running.kernel.tool("scheduler").clock = clock  # type: ignore[attr-defined]
            recorder, detach = record_events(running.kernel)
            recorders.append(recorder)
            detachers.append(detach)
        path = root / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tick(1))
        for running in apps:
            batch = await running.kernel.stage([path])
            running.kernel.commit(batch)
            running.kernel.retire(batch)
        for step in range(1, 11):
            await _both_asleep_until(clock, START + step)
            clock.advance(1)
        await _both_asleep_until(clock, START + 11)
        per_app = [[e for e in r.published if e.name == "tick.finished"] for r in recorders]
        assert sum(len(events) for events in per_app) == 10
        assert all(e.source == "a.TickPlugin" for events in per_app for e in events)
    finally:
        for detach in detachers:
            detach()
        for running in apps:
            await running.stop()
