"""The ``scheduler`` tool: background jobs owned by plugins, once per cluster.

Plugins receive a :class:`~tools.scheduler.Scheduler` bound to them: ``every(seconds,
job)``, ``cron(expression, job)`` and ``run(job)``. Jobs belong to the plugin like its
routes: they start when it serves and stop when it unloads. With a shared state store
(``STATE_URL=redis://...``) each due time runs on one replica only (``_lease``).

Settings (optional): ``SCHEDULER_LEASE`` (10 s: how long a claimed run and a running
job's lease live in the shared store without renewal, so a dead replica's lease frees
itself), ``SCHEDULER_DRAIN_TIMEOUT`` (5 s: how long shutdown waits for runs in progress
before cutting them).

Module map: ``_handle`` (the plugin-facing :class:`Scheduler`), ``_jobs`` (the
registered jobs and their tasks), ``_schedule`` (intervals and cron), ``_lease`` (once
per cluster), ``_clock`` (time, replaced in tests), ``_stats`` (what :meth:`jobs`
reports), ``_errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from microcore import Tool
from microcore.tooling import ConfigurationError, KernelView, Owner
from tools.config import Config

from ._clock import Clock
from ._handle import Scheduler
from ._jobs import Engine
from ._lease import NAMESPACE, Lease
from ._stats import JobStats

if TYPE_CHECKING:  # the state tool is optional: a project without it runs jobs locally
    from tools.state import State

__all__ = ("SchedulerTool",)


class SchedulerTool(Tool):
    """Jobs owned by plugins: ``every(seconds, job)``, ``cron(expression, job)``, ``run(job)``.

    Tools and tests read :meth:`jobs` (each job with schedule, counts, last run and
    next run); tests replace :attr:`clock` to drive time.
    """

    name = "scheduler"

    def __init__(self, config: Config, kernel: KernelView, state: State | None = None) -> None:
        self._config = config
        self._state = state
        self._engine = Engine(kernel.start_background)

    @property
    def clock(self) -> Clock:
        """Where jobs read the time and wait (``time.time`` and ``anyio.sleep``)."""
        return self._engine.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._engine.clock = clock

    async def setup(self) -> None:
        config = self._config
        lease = _positive(config, "SCHEDULER_LEASE", 10.0)
        self._engine.drain_timeout = _positive(config, "SCHEDULER_DRAIN_TIMEOUT", 5.0)
        url = (config.get("STATE_URL") or "memory://").strip()
        if url.lower().startswith("memory:"):
            return  # one process: every job runs here
        if self._state is None:
            raise ConfigurationError(
                f"STATE_URL={url.split('@')[-1]!r} is shared by replicas, but there is no "
                "state tool: jobs would run once per replica; add the state tool"
            )
        try:
            await self._state.get(NAMESPACE, "probe")
        except Exception as exc:
            raise ConfigurationError(
                f"the scheduler needs the shared state store to run each job once per "
                f"cluster, and it does not answer: {exc}"
            ) from exc
        self._engine.lease = Lease(self._state, lease)

    def bind(self, owner: Owner) -> Scheduler:
        """A :class:`Scheduler` whose jobs belong to ``owner``."""
        return Scheduler(self._engine, owner)

    def on_plugins_changed(self) -> None:
        self._engine.refresh()

    async def drain(self) -> None:
        """Start no new run; give runs in progress ``SCHEDULER_DRAIN_TIMEOUT``, then cancel
        them, logging each (``scheduler_job_cut``); ``run()`` jobs are cancelled."""
        await self._engine.drain()

    def jobs(self) -> list[JobStats]:
        """Every job of every serving plugin, sorted by plugin and name.

        >>> [(j.owner, j.name, j.schedule, j.runs, j.failures) for j in scheduler.jobs()]
        [('shop.DigestPlugin', 'send_digest', 'cron 0 9 * * *', 3, 0)]
        """
        return self._engine.jobs()


def _positive(config: Config, key: str, default: float) -> float:
    value = config.get_float(key, default)
    if not value > 0:
        raise ConfigurationError(f"{key} must be a positive number of seconds, got {value!r}")
    return value
