"""When a job is due: fixed intervals on the epoch's grid, and 5-field cron expressions (UTC).

Both give due times that every replica computes alike, so a due time names one run
across the cluster (the key of its lease).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from ._errors import ScheduleError

__all__ = ("Cron", "Every", "Schedule")

_FIELDS = "minute hour day-of-month month day-of-week"


class Every:
    """Due at each multiple of ``seconds`` since the epoch: ``every(60)`` at each minute."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: object) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ScheduleError(
                f"every() takes a positive number of seconds, got {seconds!r}; "
                "e.g. every(60, self.job) for once a minute"
            )
        self.seconds = float(seconds)

    def next_after(self, moment: float) -> float:
        """The first due time strictly after ``moment``."""
        step = self.seconds
        due = (math.floor(moment / step) + 1) * step
        return due if due > moment else due + step  # float rounding at a grid point

    def __str__(self) -> str:
        return f"every {self.seconds:g}s"


class Cron:
    """Due at the minutes a standard 5-field cron expression names, in UTC."""

    __slots__ = ("expression",)

    def __init__(self, expression: object) -> None:
        if not isinstance(expression, str) or len(expression.split()) != 5:
            raise ScheduleError(
                f"cron expression {expression!r} must have 5 fields ({_FIELDS}), "
                "e.g. '*/5 * * * *' for every five minutes"
            )
        try:
            CronSim(expression, datetime.now(UTC))
        except CronSimError as exc:
            raise ScheduleError(
                f"cron expression {expression!r} is not valid: {exc} "
                f"(fields: {_FIELDS}; e.g. '0 9 * * MON-FRI')"
            ) from exc
        self.expression = " ".join(expression.split())

    def next_after(self, moment: float) -> float:
        """The first due time strictly after ``moment``."""
        start = datetime.fromtimestamp(moment, UTC)
        return next(CronSim(self.expression, start)).timestamp()

    def __str__(self) -> str:
        return f"cron {self.expression}"


Schedule = Every | Cron
