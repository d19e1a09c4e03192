"""What plugins use of the ``scheduler`` tool: the scheduler they receive, its errors and
the statistics other tools read.

::

    from tools.scheduler import Scheduler

    class DigestPlugin(Plugin):
        def __init__(self, scheduler: Scheduler) -> None:
            self.scheduler = scheduler

        async def on_boot(self) -> None:
            self.scheduler.cron("0 9 * * *", self.send_digest)

        async def send_digest(self) -> None:
            ...

The tool itself (``SchedulerTool``) lives in ``tools/scheduler/scheduler_tool.py``.
"""

from __future__ import annotations

from microcore.tooling import Registration, RegistrationError

from ._errors import ScheduleError
from ._handle import Scheduler
from ._jobs import Job
from ._stats import JobKind, JobStats

__all__ = (
    "Job",
    "JobKind",
    "JobStats",
    "Registration",
    "RegistrationError",
    "ScheduleError",
    "Scheduler",
)
