"""The jobs of every plugin and the tasks that run them.

Each registered job gets one task (started in the kernel's task group once its
plugin serves) that waits for the next due time, runs the job inline and waits
again, so runs of one job never stack: due times that pass while a run is going
are skipped and counted. A run is a call into the plugin (``owner.enter``), so a
reloaded version retires only after its runs have finished; the kernel bounds that
wait with ``MICROCORE_HOOK_TIMEOUT`` and then releases the job, which cancels the
run with a warning. ``run()`` jobs are one long call, cancelled when the version
retires and restarted with backoff when they raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

from microcore.tooling import (
    TRACING,
    Owner,
    Registration,
    RegistrationError,
    causation,
    new_id,
)

from ._clock import Clock, SystemClock
from ._errors import ScheduleError
from ._lease import Claim, Lease
from ._schedule import Every, Schedule
from ._stats import JobKind, JobStats

__all__ = ("Engine", "Job")

Job = Callable[[], Awaitable[object]]
"""A job: ``async def job() -> None`` (a bound method of the plugin, usually)."""

Start = Callable[..., None]  # KernelView.start_background(fn, *args, name=...)

_log = structlog.get_logger("microcore.scheduler")


class _Counters:
    """What is known of one job (plugin identity and name), kept across hot reloads."""

    __slots__ = (
        "failures",
        "last_duration",
        "last_error",
        "last_run",
        "refs",
        "running",
        "runs",
        "skips",
    )

    def __init__(self) -> None:
        self.runs = self.failures = self.skips = 0
        self.last_run: float | None = None
        self.last_duration: float | None = None
        self.last_error: str | None = None
        self.running = 0  # runs in progress (an old version may still finish one)
        self.refs = 0  # registrations sharing these counters


class _Job:
    """One registration: its schedule, its task and how to stop it."""

    __slots__ = (
        "counters",
        "done",
        "fn",
        "key",
        "kind",
        "label",
        "name",
        "next_run",
        "owner",
        "running",
        "schedule",
        "scope",
        "sleeping",
        "started",
        "stopping",
        "task",
    )

    def __init__(
        self,
        owner: Owner,
        name: str,
        kind: JobKind,
        schedule: Schedule | None,
        fn: Job,
        counters: _Counters,
    ) -> None:
        self.owner, self.name, self.kind, self.schedule, self.fn = owner, name, kind, schedule, fn
        self.counters = counters
        self.key = f"{owner.identity}/{name}"  # the same on every replica and across reloads
        self.label = f"{name} ({self.describe()})"
        self.started = False  # its task was started
        self.running = False  # a run of this registration is in progress
        self.stopping = False  # no new run starts
        self.scope: anyio.CancelScope | None = None  # the whole task
        self.sleeping: anyio.CancelScope | None = None  # the wait for the next due time
        self.task: int | None = None
        self.next_run: float | None = None
        self.done = anyio.Event()

    def describe(self) -> str:
        return "run" if self.schedule is None else str(self.schedule)

    def cancel(self) -> None:
        """Stop the task now, a run in progress included."""
        self.stopping = True
        if self.scope is not None:
            self.scope.cancel()

    def stats(self) -> JobStats:
        c = self.counters
        return JobStats(
            owner=self.owner.identity,
            name=self.name,
            kind=self.kind,
            schedule=self.describe(),
            runs=c.runs,
            failures=c.failures,
            skips=c.skips,
            last_run=c.last_run,
            last_duration=c.last_duration,
            last_error=c.last_error,
            next_run=self.next_run,
            running=c.running > 0,
        )

    def log_fields(self) -> dict[str, str]:
        return {"plugin": self.owner.identity, "job": self.name}


class Engine:
    """Every job of every plugin: registration, the tasks, draining at shutdown."""

    def __init__(self, start_background: Start) -> None:
        self.clock: Clock = SystemClock()
        self.lease: Lease | None = None  # set when the state store is shared by replicas
        self.backoff = (1.0, 60.0)  # restart delays of a crashed run() job: first, most
        self.drain_timeout = 5.0
        self._start = start_background
        self._jobs: list[_Job] = []
        self._counters: dict[tuple[str, str], _Counters] = {}
        self._accepting = True

    # -- registration --------------------------------------------------------------

    def add(
        self, owner: Owner, kind: JobKind, schedule: Schedule | None, fn: Job, name: str | None
    ) -> Registration:
        """Register ``fn`` for ``owner``; it starts once the owner serves."""
        if name is None:
            name = str(getattr(fn, "__name__", None) or type(fn).__name__)
        if not isinstance(name, str) or not name.strip():
            raise ScheduleError(f"a job name must be a non-empty string, got {name!r}")
        for job in self._jobs:
            if job.owner is owner and job.name == name:
                raise RegistrationError(
                    f"plugin {owner.identity!r} already has a job named {name!r} "
                    f"({job.describe()}); pass name=... to tell them apart"
                )
        key = (owner.identity, name)
        counters = self._counters.get(key) or _Counters()
        job = _Job(owner, name, kind, schedule, fn, counters)

        async def release() -> None:
            await self._release(job)

        registration = owner.own("job", job.label, release)  # refused once the owner is gone
        self._counters[key] = counters
        counters.refs += 1
        self._jobs.append(job)
        if owner.active:
            self._begin(job)
        return registration

    def refresh(self) -> None:
        """Plugins were committed or unloaded: start the jobs of new versions, stop the old."""
        for job in list(self._jobs):
            if job.owner.released:
                self._stop(job)
            elif job.owner.active:
                self._begin(job)

    def jobs(self) -> list[JobStats]:
        rows = [job.stats() for job in self._jobs if job.owner.active]
        return sorted(rows, key=lambda r: (r.owner, r.name))

    def _begin(self, job: _Job) -> None:
        if job.started or not self._accepting:
            return
        job.started = True
        self._start(self._drive, job, name=f"scheduler {job.owner.identity}: {job.label}")

    def _stop(self, job: _Job) -> None:
        """Start no new run; a long-lived ``run()`` job is cancelled (its version retired)."""
        if job.kind is JobKind.RUN:
            job.cancel()
            return
        job.stopping = True
        if job.sleeping is not None:
            job.sleeping.cancel()

    async def _release(self, job: _Job) -> None:
        self._jobs.remove(job)
        counters = job.counters
        counters.refs -= 1
        if counters.refs == 0:
            del self._counters[(job.owner.identity, job.name)]
        if job.task is not None and job.task == anyio.get_current_task().id:
            job.stopping = True  # released from inside its own run: that run finishes
            return
        if job.running and job.kind is not JobKind.RUN:
            _log.warning(
                "scheduler_job_cancelled",
                **job.log_fields(),
                reason="released while a run was in progress (past MICROCORE_HOOK_TIMEOUT "
                "when the plugin was unloaded)",
            )
        job.cancel()
        if job.started:
            await job.done.wait()

    # -- shutdown ------------------------------------------------------------------

    async def drain(self) -> None:
        """Start no new run; wait ``drain_timeout`` for runs in progress, then cut them."""
        self._accepting = False
        for job in self._jobs:
            self._stop(job)
        busy = [job for job in self._jobs if job.started and not job.done.is_set()]
        deadline = self.clock.now() + self.drain_timeout
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._cancel_at, deadline, tg.cancel_scope)
            tg.start_soon(_cancel_when_done, busy, tg.cancel_scope)
        cut: list[_Job] = []
        for job in busy:
            if not job.done.is_set():
                _log.warning("scheduler_job_cut", **job.log_fields(), seconds=self.drain_timeout)
                job.cancel()
                cut.append(job)
        with anyio.move_on_after(self.drain_timeout):  # cancelled runs unwind at once, normally
            for job in cut:
                await job.done.wait()

    async def _cancel_at(self, deadline: float, scope: anyio.CancelScope) -> None:
        await self.clock.sleep_until(deadline)
        scope.cancel()

    # -- the task of one job -------------------------------------------------------

    async def _drive(self, job: _Job) -> None:
        job.task = anyio.get_current_task().id
        try:
            with anyio.CancelScope() as scope:
                job.scope = scope
                if job.stopping:
                    return
                if job.schedule is None:
                    await self._keep_running(job)
                else:
                    await self._keep_scheduling(job, job.schedule)
        finally:
            job.scope = job.next_run = None
            job.done.set()

    async def _keep_scheduling(self, job: _Job, schedule: Schedule) -> None:
        due = schedule.next_after(self.clock.now())
        while True:  # until stopped: checked after each wait and each run
            job.next_run = due
            with anyio.CancelScope() as sleeping:
                job.sleeping = sleeping
                await self.clock.sleep_until(due)
            job.sleeping = None
            if job.stopping:
                return
            await self._fire(job, due)
            if job.stopping:  # retired during the run: due times from now on are not its own
                return
            due = self._following(job, schedule, due)

    def _following(self, job: _Job, schedule: Schedule, due: float) -> float:
        """The next due time after the run of ``due``; those that passed during it are skipped."""
        now = self.clock.now()
        following = schedule.next_after(due)
        if following > now:
            return following
        upcoming = schedule.next_after(now)
        if isinstance(schedule, Every):
            missed = round((upcoming - following) / schedule.seconds)
        else:
            missed = 0
            while following < upcoming:
                missed += 1
                following = schedule.next_after(following)
        job.counters.skips += missed
        _log.info("scheduler_runs_skipped", **job.log_fields(), skipped=missed, overran=True)
        return upcoming

    async def _fire(self, job: _Job, due: float) -> None:
        counters = job.counters
        if counters.running:  # a previous version of the plugin is still finishing a run
            counters.skips += 1
            _log.info("scheduler_runs_skipped", **job.log_fields(), skipped=1, overran=True)
            return
        held: tuple[Lease, str] | None = None
        lease = self.lease
        if lease is not None:
            try:
                claim = await lease.claim(job.key, due)
            except Exception as exc:  # noqa: BLE001 - isolation boundary: the store is down
                counters.failures += 1
                counters.last_error = f"lease: {type(exc).__name__}: {exc}"
                _log.exception("scheduler_lease_failed", **job.log_fields())
                return
            if claim is Claim.TAKEN:  # another replica runs this due time
                return
            if claim is Claim.BUSY:  # a run is still going on another replica
                counters.skips += 1
                _log.info("scheduler_runs_skipped", **job.log_fields(), skipped=1, overran=True)
                return
            held = (lease, claim)
        await self._run(job, held)

    async def _run(self, job: _Job, held: tuple[Lease, str] | None) -> bool:
        """One run of the job as a call into its plugin; whether it raised."""
        counters, owner, clock = job.counters, job.owner, self.clock
        counters.running += 1
        job.running = True
        owner.enter()
        started = counters.last_run = clock.now()
        failed = False
        try:
            with (
                causation(new_id()),
                structlog.contextvars.bound_contextvars(**job.log_fields()),
            ):
                async with anyio.create_task_group() as tg:
                    if held is not None:
                        tg.start_soon(self._renew, job, *held)
                    try:
                        if TRACING.enabled:
                            with TRACING.span(f"job {job.name}", attributes=job.log_fields()):
                                await job.fn()
                        else:
                            await job.fn()
                    except Exception as exc:  # noqa: BLE001 - isolation boundary: one run
                        failed = True
                        counters.failures += 1
                        counters.last_error = f"{type(exc).__name__}: {exc}"
                        _log.exception("scheduler_job_failed", **job.log_fields())
                    else:
                        counters.last_error = None
                    finally:
                        tg.cancel_scope.cancel()
        except BaseException:
            counters.last_error = "cancelled"
            raise
        finally:
            counters.runs += 1
            counters.last_duration = clock.now() - started
            counters.running -= 1
            job.running = False
            owner.leave()
            if held is not None:
                await self._free(job, *held)
        return failed

    async def _renew(self, job: _Job, lease: Lease, token: str) -> None:
        while True:
            await anyio.sleep(lease.ttl / 3)  # the store's expiry runs on real time
            try:
                if not await lease.renew(job.key, token):
                    _log.warning("scheduler_lease_lost", **job.log_fields())
                    return
            except Exception:  # noqa: BLE001 - isolation boundary: the store; retried next beat
                _log.exception("scheduler_lease_renew_failed", **job.log_fields())

    async def _free(self, job: _Job, lease: Lease, token: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(lease.ttl):
            try:
                await lease.release(job.key, token)
            except Exception:  # noqa: BLE001 - isolation boundary: the key expires anyway
                _log.exception("scheduler_lease_release_failed", **job.log_fields())

    async def _keep_running(self, job: _Job) -> None:
        first, most = self.backoff
        delay = first
        while True:
            started = self.clock.now()
            if not await self._run(job, None):
                _log.info("scheduler_task_returned", **job.log_fields())
                return
            now = self.clock.now()
            if now - started >= most:  # it ran a good while before failing: start over
                delay = first
            job.next_run = now + delay
            _log.warning("scheduler_task_restarting", **job.log_fields(), seconds=delay)
            await self.clock.sleep_until(job.next_run)
            job.next_run = None
            delay = min(delay * 2, most)


async def _cancel_when_done(jobs: list[_Job], scope: anyio.CancelScope) -> None:
    for job in jobs:
        await job.done.wait()
    scope.cancel()
