"""The scheduler on a fake kernel and a fake clock: when jobs run, skip, fail and stop."""

from __future__ import annotations

import anyio
import pytest
import structlog

from microcore.tooling import (
    ConfigurationError,
    HookError,
    RegistrationError,
    current_correlation_id,
)
from tests.support import FakeKernel, eventually
from tests.tools.scheduler.conftest import (
    START,
    FakeClock,
    Recorder,
    activate,
    plugin,
    retire,
    running_scheduler,
)
from tools.config.config_tool import ConfigTool
from tools.scheduler import JobKind, JobStats, ScheduleError
from tools.scheduler.scheduler_tool import SchedulerTool


async def test_every_runs_at_each_multiple_of_its_interval() -> None:
    """every(10) runs at the next multiple of 10 s since the epoch, then every 10 s."""
    clock = FakeClock(START + 3)
    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)
        job = Recorder()
        scheduler.every(10, job)
        await eventually(lambda: clock.sleeping_until(START + 10))
        clock.advance(6)  # START + 9: not yet
        await eventually(lambda: clock.sleeping_until(START + 10))
        assert job.calls == 0
        clock.advance(1)
        await eventually(lambda: clock.sleeping_until(START + 20))
        assert job.calls == 1
        clock.advance(10)
        await eventually(lambda: clock.sleeping_until(START + 30))
        assert job.calls == 2
        [stats] = tool.jobs()
        assert stats == JobStats(
            owner="shop.JobsPlugin",
            name="recorder",
            kind=JobKind.EVERY,
            schedule="every 10s",
            runs=2,
            failures=0,
            skips=0,
            last_run=START + 20,
            last_duration=0.0,
            last_error=None,
            next_run=START + 30,
            running=False,
        )


async def test_cron_runs_at_the_minutes_it_names() -> None:
    """cron("*/5 * * * *") runs at each fifth minute (UTC)."""
    start = 1_700_000_100.0  # 22:15:00 UTC, a fifth minute
    clock = FakeClock(start + 1)
    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)
        job = Recorder()
        scheduler.cron("*/5  * * * *", job, name="sweep")
        await eventually(lambda: clock.sleeping_until(start + 300))
        clock.advance(299)
        await eventually(lambda: clock.sleeping_until(start + 600))
        assert job.calls == 1
        [stats] = tool.jobs()
        assert (stats.name, stats.kind, stats.schedule) == (
            "sweep",
            JobKind.CRON,
            "cron */5 * * * *",
        )


async def test_pending_owner_runs_nothing_until_committed() -> None:
    """Jobs registered while the plugin boots wait for the commit; a failed boot never runs."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        scheduler, owner = plugin(tool, active=False)
        job = Recorder()
        scheduler.every(1, job)
        tool.on_plugins_changed()  # another plugin committed: this one still boots
        assert tool.jobs() == [] and clock.waiting == []
        activate(tool, owner)
        await eventually(lambda: clock.sleeping_until(START + 1))
        clock.advance(1)
        await eventually(lambda: job.calls == 1)

        failed_scheduler, failed = plugin(tool, "shop.BrokenPlugin", active=False)
        other = Recorder()
        failed_scheduler.every(1, other)
        await failed.release()  # on_boot raised: the kernel releases the pending owner
        clock.advance(1)
        await eventually(lambda: job.calls == 2)
        assert other.calls == 0
        assert [j.owner for j in tool.jobs()] == ["shop.JobsPlugin"]


async def test_failing_job_is_logged_and_runs_again() -> None:
    """A job that raises is logged with its traceback, counted, and runs at its next time."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)
        job = Recorder(fail=RuntimeError("partner API down"))
        scheduler.every(1, job)
        with structlog.testing.capture_logs() as logs:
            await eventually(lambda: clock.sleeping_until(START + 1))
            clock.advance(1)
            await eventually(lambda: clock.sleeping_until(START + 2))
        failed = [e for e in logs if e["event"] == "scheduler_job_failed"]
        assert failed[0]["plugin"] == "shop.JobsPlugin" and failed[0]["job"] == "recorder"
        assert failed[0]["exc_info"] is True and failed[0]["log_level"] == "error"
        [stats] = tool.jobs()
        assert (stats.runs, stats.failures) == (1, 1)
        assert stats.last_error == "RuntimeError: partner API down"
        job.fail = None
        clock.advance(1)
        await eventually(lambda: clock.sleeping_until(START + 3))
        [stats] = tool.jobs()
        assert (stats.runs, stats.failures, stats.last_error) == (2, 1, None)


async def test_overlapping_runs_are_skipped_and_counted() -> None:
    """Due times that pass while a run is going are skipped (counted), never stacked."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)
        job = Recorder(hold=True)
        scheduler.every(1, job)
        await eventually(lambda: clock.sleeping_until(START + 1))
        clock.advance(1)
        await eventually(lambda: job.calls == 1)
        assert tool.jobs()[0].running
        clock.advance(3.5)  # START + 4.5: due times 2, 3 and 4 pass during the run
        job.release_gate()
        await eventually(lambda: clock.sleeping_until(START + 5))
        [stats] = tool.jobs()
        assert (job.calls, stats.runs, stats.skips, stats.running) == (1, 1, 3, False)
        assert stats.last_duration == 3.5


async def test_cron_overrun_skips_each_minute_it_missed() -> None:
    """A cron run that lasts past several due minutes skips each of them once."""
    clock = FakeClock(START - 1)
    start = 1_699_999_980.0  # START rounded down to a minute
    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)
        job = Recorder(hold=True)
        scheduler.cron("* * * * *", job)
        await eventually(lambda: clock.sleeping_until(start + 60))
        clock.advance(start + 60 - clock.now())
        await eventually(lambda: job.calls == 1)
        clock.advance(150)  # minutes +120 and +180 pass during the run
        job.release_gate()
        await eventually(lambda: clock.sleeping_until(start + 240))
        assert tool.jobs()[0].skips == 2


async def test_jobs_publish_under_a_fresh_correlation_id_per_run() -> None:
    """Each run has its own causal context (what it publishes shares one correlation id)."""
    clock = FakeClock()
    seen: list[str | None] = []

    async def job() -> None:
        seen.append(current_correlation_id())

    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)
        scheduler.every(1, job)
        for count in (1, 2):
            await eventually(lambda: bool(clock.waiting))
            clock.advance(1)
            await eventually(lambda: len(seen) == count)  # noqa: B023 - awaited here
    assert all(seen) and len(set(seen)) == 2


async def test_released_owner_stops_its_jobs() -> None:
    """A plugin unloaded or replaced runs no more jobs; its registrations disappear."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        scheduler, owner = plugin(tool)
        job = Recorder()
        scheduler.every(1, job)
        await eventually(lambda: clock.sleeping_until(START + 1))
        retire(tool, owner)
        await eventually(lambda: clock.waiting == [])
        assert tool.jobs() == []
        await owner.release()
        clock.advance(5)
        assert job.calls == 0 and owner.registrations == ()


async def test_run_in_progress_finishes_on_the_old_version() -> None:
    """A run going when its plugin is replaced finishes; the owner is busy until then."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        scheduler, owner = plugin(tool)
        job = Recorder(hold=True)
        scheduler.every(1, job)
        await eventually(lambda: clock.sleeping_until(START + 1))
        clock.advance(1)
        await eventually(lambda: job.calls == 1)
        retire(tool, owner)
        assert owner.busy == 1
        job.release_gate()
        with anyio.fail_after(5):
            await owner.wait_idle()
        assert job.finished == 1
        await owner.release()
        assert owner.registrations == ()


async def test_new_version_skips_while_the_old_one_finishes_a_run() -> None:
    """After a reload the new version's job does not run beside the old version's run."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        old_scheduler, old = plugin(tool)
        old_job = Recorder(hold=True)
        old_scheduler.every(1, old_job, name="tick")
        await eventually(lambda: clock.sleeping_until(START + 1))
        clock.advance(1)
        await eventually(lambda: old_job.calls == 1)
        new_scheduler, new = plugin(tool, active=False)
        new_job = Recorder()
        new_scheduler.every(1, new_job, name="tick")
        new.activate()
        retire(tool, old)  # commit: the new version serves, the old one stops
        await eventually(lambda: clock.sleeping_until(START + 2))
        clock.advance(1)
        await eventually(lambda: clock.sleeping_until(START + 3))
        assert new_job.calls == 0
        [stats] = tool.jobs()
        assert (stats.owner, stats.skips, stats.running) == ("shop.JobsPlugin", 1, True)
        old_job.release_gate()
        await old.wait_idle()
        await old.release()
        clock.advance(1)
        await eventually(lambda: new_job.calls == 1)
        [stats] = tool.jobs()
        assert (stats.runs, stats.skips) == (2, 1)  # counters kept across the reload


async def test_release_cancels_a_run_past_the_deadline_with_a_warning() -> None:
    """Released while a run is still going (past the hook timeout), the run is cancelled and
    the cancellation logged, naming the job."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        scheduler, owner = plugin(tool)
        job = Recorder(hold=True)
        scheduler.every(1, job, name="slow")
        await eventually(lambda: clock.sleeping_until(START + 1))
        clock.advance(1)
        await eventually(lambda: job.calls == 1)
        retire(tool, owner)
        with structlog.testing.capture_logs() as logs:
            await owner.release()
        assert owner.busy == 0 and job.finished == 0
        warning = next(e for e in logs if e["event"] == "scheduler_job_cancelled")
        assert (warning["plugin"], warning["job"], warning["log_level"]) == (
            "shop.JobsPlugin",
            "slow",
            "warning",
        )


async def test_registration_release_stops_one_job() -> None:
    """``await registration.release()`` stops that job only; another keeps its schedule."""
    clock = FakeClock()
    async with running_scheduler(clock=clock) as tool:
        scheduler, owner = plugin(tool)
        first, second = Recorder(), Recorder()
        registration = scheduler.every(1, first, name="first")
        scheduler.every(1, second, name="second")
        assert registration.label == "first (every 1s)"
        assert owner.labels("job") == ["first (every 1s)", "second (every 1s)"]
        await eventually(lambda: len(clock.waiting) == 2)
        await registration.release()
        assert [j.name for j in tool.jobs()] == ["second"]
        clock.advance(1)
        await eventually(lambda: second.calls == 1)
        assert first.calls == 0


async def test_job_releasing_itself_finishes_its_run() -> None:
    """A job may release its own registration: that run finishes, no other starts."""
    clock = FakeClock()
    runs: list[int] = []

    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)

        async def once() -> None:
            await registration.release()
            runs.append(1)

        registration = scheduler.every(1, once)
        await eventually(lambda: bool(clock.waiting))
        clock.advance(1)
        await eventually(lambda: runs == [1])
        await eventually(lambda: clock.waiting == [])
        assert tool.jobs() == []


async def test_registration_refusals_say_how_to_fix() -> None:
    """A sync job, a bad interval, a duplicate or empty name, a dead owner: clear errors."""
    async with running_scheduler() as tool:
        scheduler, owner = plugin(tool)

        def sync_job() -> None: ...

        async def job() -> None: ...

        with pytest.raises(HookError, match=r"declare it 'async def sync_job\(...\)'"):
            scheduler.every(1, sync_job)  # type: ignore[arg-type]
        for bad in (0, -1, float("inf"), float("nan"), True, "5"):
            with pytest.raises(ScheduleError, match="positive number of seconds"):
                scheduler.every(bad, job)  # type: ignore[arg-type]
        scheduler.every(1, job)
        with pytest.raises(RegistrationError, match=r"already has a job named 'job'.*name="):
            scheduler.cron("* * * * *", job)
        with pytest.raises(ScheduleError, match="non-empty string"):
            scheduler.run(job, name=" ")
        await owner.release()
        with pytest.raises(RegistrationError, match="was unloaded"):
            scheduler.every(1, job, name="late")
        assert "late" not in [j.name for j in tool.jobs()]
        assert repr(scheduler) == "<Scheduler of shop.JobsPlugin>"


async def test_run_job_restarts_with_backoff_until_it_returns() -> None:
    """run(): a crashing task is restarted after 1 s, 2 s, 4 s ...; one that returns ends."""
    clock = FakeClock()
    attempts: list[float] = []

    async def flaky() -> None:
        attempts.append(clock.now())
        if len(attempts) < 4:
            raise ConnectionError("feed closed")

    async with running_scheduler(clock=clock) as tool:
        scheduler, _ = plugin(tool)
        with structlog.testing.capture_logs() as logs:  # (also skips rendering tracebacks)
            scheduler.run(flaky)
            await eventually(lambda: len(attempts) == 1)
            for delay in (1, 2, 4):
                due = clock.now() + delay
                await eventually(lambda: clock.sleeping_until(due))  # noqa: B023 - awaited here
                [stats] = tool.jobs()
                assert stats.next_run == due and stats.last_error == "ConnectionError: feed closed"
                clock.advance(delay)
            await eventually(lambda: len(attempts) == 4)
        restarts = [e["seconds"] for e in logs if e["event"] == "scheduler_task_restarting"]
        assert restarts == [1, 2, 4]
        assert [e["event"] for e in logs].count("scheduler_task_returned") == 1
        assert [a - START for a in attempts] == [0, 1, 3, 7]
        await eventually(lambda: tool.jobs()[0].next_run is None and not tool.jobs()[0].running)
        [stats] = tool.jobs()
        assert (stats.kind, stats.schedule, stats.runs, stats.failures) == (
            JobKind.RUN,
            "run",
            4,
            3,
        )


async def test_run_job_backoff_starts_over_after_a_long_run() -> None:
    """A task that ran longer than the longest backoff before crashing restarts after 1 s."""
    clock = FakeClock()
    attempts: list[float] = []
    gate = anyio.Event()

    async def feed() -> None:
        attempts.append(clock.now())
        if len(attempts) == 3:
            await gate.wait()
        raise ConnectionError("feed closed")

    async with running_scheduler(clock=clock) as tool:
        tool._engine.backoff = (1.0, 4.0)
        scheduler, _ = plugin(tool)
        with structlog.testing.capture_logs():  # (skips rendering tracebacks)
            scheduler.run(feed)
            await eventually(lambda: clock.sleeping_until(START + 1))
            clock.advance(1)
            await eventually(lambda: clock.sleeping_until(START + 3))
            clock.advance(2)
            await eventually(lambda: len(attempts) == 3)
            clock.advance(10)  # the third attempt runs 10 s, past the longest backoff
            gate.set()
            await eventually(lambda: clock.sleeping_until(START + 14))


async def test_run_job_is_cancelled_when_its_version_retires() -> None:
    """A long-lived task stops when its plugin is replaced or unloaded, then frees the owner."""
    clock = FakeClock()
    started, stopped = anyio.Event(), anyio.Event()

    async def loop() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    async with running_scheduler(clock=clock) as tool:
        scheduler, owner = plugin(tool)
        scheduler.run(loop)
        with anyio.fail_after(5):
            await started.wait()
        assert tool.jobs()[0].running and owner.busy == 1
        retire(tool, owner)
        with anyio.fail_after(5):
            await stopped.wait()
            await owner.wait_idle()
        await owner.release()
        assert owner.registrations == ()


async def test_drain_waits_for_runs_then_cuts_and_logs() -> None:
    """Shutdown lets a run finish within the drain deadline; past it the run is cut, logged."""
    clock = FakeClock()
    async with running_scheduler({"SCHEDULER_DRAIN_TIMEOUT": "0.2"}, clock=clock) as tool:
        scheduler, _ = plugin(tool)
        quick, stuck = Recorder(hold=True), Recorder(hold=True)
        scheduler.every(1, quick, name="quick")
        scheduler.every(1, stuck, name="stuck")

        async def feed() -> None:
            await anyio.sleep_forever()

        scheduler.run(feed)
        await eventually(lambda: len(clock.waiting) == 2)
        clock.advance(1)
        await eventually(lambda: quick.calls == 1 and stuck.calls == 1)
        quick.release_gate()
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(tool.drain)
                await eventually(lambda: quick.finished == 1 and clock.waiting == [START + 1.2])
                clock.advance(0.2)  # the drain deadline passes with "stuck" still running
        cut = [e for e in logs if e["event"] == "scheduler_job_cut"]
        assert [(e["job"], e["seconds"]) for e in cut] == [("stuck", 0.2)]
        assert quick.finished == 1 and stuck.finished == 0
        assert {j.name: j.last_error for j in tool.jobs()}["stuck"] == "cancelled"
        late = Recorder()
        scheduler.every(1, late, name="late")  # after drain nothing starts
        clock.advance(1)
        assert clock.waiting == [] and late.calls == 0


async def test_settings_are_checked() -> None:
    """SCHEDULER_LEASE and SCHEDULER_DRAIN_TIMEOUT must be positive numbers of seconds."""
    for key in ("SCHEDULER_LEASE", "SCHEDULER_DRAIN_TIMEOUT"):
        async with anyio.create_task_group() as tg:
            kernel = FakeKernel({key: "0"}, tg)
            tool = SchedulerTool(ConfigTool(kernel), kernel)
            with pytest.raises(ConfigurationError, match=f"{key} must be a positive number"):
                await tool.setup()
