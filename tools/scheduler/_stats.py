"""What the scheduler reports about each job (``/system/status``, ``/system/metrics``)."""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ("JobKind", "JobStats")


class JobKind(StrEnum):
    """How a job was registered."""

    EVERY = "every"  # scheduler.every(seconds, job)
    CRON = "cron"  # scheduler.cron(expression, job)
    RUN = "run"  # scheduler.run(job): a long-lived task


class JobStats(msgspec.Struct, frozen=True, kw_only=True):
    """One registered job of a serving plugin.

    Counters are kept across hot reloads of the plugin (they belong to ``owner`` and
    ``name``). ``runs`` counts finished runs (for ``run()`` jobs: starts that ended),
    ``failures`` the runs that raised, ``skips`` the due times passed over because the
    previous run was still going (here or, with a shared state store, on another
    replica). Times are epoch seconds; ``last_error`` is the error of the last run
    (``None`` when it succeeded); ``next_run`` is the next due time (for a ``run()`` job
    that crashed: when it restarts).
    """

    owner: str
    name: str
    kind: JobKind
    schedule: str
    runs: int = 0
    failures: int = 0
    skips: int = 0
    last_run: float | None = None
    last_duration: float | None = None
    last_error: str | None = None
    next_run: float | None = None
    running: bool = False
