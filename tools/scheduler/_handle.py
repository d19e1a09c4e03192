"""What a plugin receives as ``scheduler``: the scheduler, bound to that plugin."""

from __future__ import annotations

from microcore.tooling import Owner, Registration, require_coroutine_function

from ._jobs import Engine, Job
from ._schedule import Cron, Every
from ._stats import JobKind

__all__ = ("Scheduler",)


class Scheduler:
    """Background work owned by one plugin: intervals, cron expressions, long-lived tasks.

    Register jobs in ``on_boot``; they start once the plugin serves and stop when it
    unloads (a hot reload leaves no duplicate, a deleted plugin no orphan). Jobs are
    ``async def job()``; what they publish on the bus comes from the plugin, each run
    with its own correlation id. A job that raises is logged with its traceback and
    runs again at its next time; a run still going when the next is due makes that one
    skip (counted), never stack. With a shared state store (``STATE_URL=redis://...``)
    each due time runs on exactly one replica::

        from microcore import Plugin
        from tools.event_bus import EventBus
        from tools.scheduler import Scheduler

        class CartExpiryPlugin(Plugin):
            def __init__(self, scheduler: Scheduler, event_bus: EventBus) -> None:
                self.scheduler, self.bus = scheduler, event_bus

            async def on_boot(self) -> None:
                self.scheduler.every(60, self.expire_carts)
                self.scheduler.cron("0 7 * * MON", self.weekly_digest)

            async def expire_carts(self) -> None:
                await self.bus.publish("cart.expired", {"count": 3})
    """

    __slots__ = ("_engine", "_owner")

    def __init__(self, engine: Engine, owner: Owner) -> None:
        self._engine = engine
        self._owner = owner

    def every(self, seconds: float, job: Job, *, name: str | None = None) -> Registration:
        """Run ``await job()`` at each multiple of ``seconds`` since the epoch (replicas agree).

        ``every(60)`` runs at the start of each minute, on one replica.

        ``name`` (default: the function's name) tells two jobs of one plugin apart.
        Returns the registration; ``await registration.release()`` stops the job.

        >>> self.scheduler.every(30, self.poll_partner_api)
        >>> self.scheduler.every(0.5, self.flush, name="flush-buffer")
        """
        require_coroutine_function(job, what=f"scheduler job of {self._owner.identity!r}")
        return self._engine.add(self._owner, JobKind.EVERY, Every(seconds), job, name)

    def cron(self, expression: str, job: Job, *, name: str | None = None) -> Registration:
        """Run ``await job()`` at the times a 5-field cron expression names, in UTC.

        The fields: minute hour day-of-month month day-of-week.

        A malformed expression raises :class:`~tools.scheduler.ScheduleError` quoting it,
        which fails the plugin at ``on_boot``.

        >>> self.scheduler.cron("*/15 * * * *", self.refresh_rates)
        >>> self.scheduler.cron("0 9 * * MON-FRI", self.send_digest, name="digest")
        """
        require_coroutine_function(job, what=f"scheduler job of {self._owner.identity!r}")
        return self._engine.add(self._owner, JobKind.CRON, Cron(expression), job, name)

    def run(self, job: Job, *, name: str | None = None) -> Registration:
        """Run ``await job()`` in the background while the plugin lives; restart it if it raises.

        It is cancelled when the plugin retires; if it raises, it is logged and restarted
        after a backoff (1 s, doubling to 60 s). For loops that live as long as the plugin:
        a websocket client, a queue poller. It runs on every replica.

        >>> self.scheduler.run(self.follow_price_feed)
        """
        require_coroutine_function(job, what=f"scheduler job of {self._owner.identity!r}")
        return self._engine.add(self._owner, JobKind.RUN, None, job, name)

    def __repr__(self) -> str:
        return f"<Scheduler of {self._owner.identity}>"
