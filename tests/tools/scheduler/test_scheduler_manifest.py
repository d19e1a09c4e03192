"""AI_CONTEXT.md names every job with its schedule, under the plugin that owns it."""

from __future__ import annotations

from microcore._dev.manifest import generate
from tests.conftest import ProjectFactory

JOBS = """
from microcore import Plugin
from tools.scheduler import Scheduler


class PartnerPlugin(Plugin):
    '''Keeps the partner's catalogue in sync.'''

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def on_boot(self) -> None:
        self.scheduler.every(30, self.poll)
        self.scheduler.cron("0 9 * * MON-FRI", self.digest)
        self.scheduler.run(self.follow_feed, name="feed")

    async def poll(self) -> None:
        pass

    async def digest(self) -> None:
        pass

    async def follow_feed(self) -> None:
        pass
"""


async def test_manifest_lists_each_job_with_its_schedule(make_project: ProjectFactory) -> None:
    """The plugin's line names its jobs, sorted, each with its interval, cron or ``run``."""
    root = make_project(
        {"domains/partner/plugins/partner_plugin.py": JOBS},
        tools=["config", "logger", "scheduler"],
    )
    text = await generate(root)
    assert (
        "(scheduler): Keeps the partner's catalogue in sync. "
        "jobs: digest (cron 0 9 * * MON-FRI), feed (run), poll (every 30s)" in text
    )
