"""The scheduler's errors."""

from __future__ import annotations

from microcore.tooling import RegistrationError

__all__ = ("ScheduleError",)


class ScheduleError(RegistrationError, ValueError):
    """A schedule the scheduler cannot run: a bad cron expression, an interval that is not a
    positive number of seconds, an empty job name. Raised at registration (``on_boot``), so
    the plugin fails with the message instead of a job silently never running."""
