"""Scheduled jobs in ``/system/status`` and on the dashboard: each job with its schedule,
last run, last duration, last error and next run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from microcore.testing import start_app
from tests.conftest import ProjectFactory
from tests.support import eventually, serve
from tests.test_dashboard_browser import WAIT_MS, open_page
from tests.tools.system.conftest import Boot

if TYPE_CHECKING:  # the package is optional at run time: the browser test skips without it
    from playwright.sync_api import Browser

APP = "from microcore import create_app\n\napp = create_app()\n"

JOBS = """
from microcore import Plugin


class PartnerPlugin(Plugin):
    def __init__(self, scheduler):
        self.scheduler = scheduler

    async def on_boot(self):
        self.scheduler.every(0.05, self.poll)
        self.scheduler.every(0.05, self.push, name="push-orders")
        self.scheduler.cron("0 9 * * MON-FRI", self.digest)

    async def poll(self):
        pass

    async def push(self):
        raise RuntimeError("partner said 503")

    async def digest(self):
        pass
"""


@pytest.fixture
async def client(make_project: ProjectFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A project whose plugin has three jobs, with the scheduler and system tools."""
    root = make_project(
        {"domains/partner/plugins/partner_plugin.py": JOBS},
        tools=["config", "logger", "http", "scheduler", "system"],
    )
    running = await start_app(root, settings={"LOG_LEVEL": "CRITICAL"})
    transport = httpx.ASGITransport(app=running.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await running.stop()


async def _jobs(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/system/status")
    assert response.status_code == 200
    return {job["name"]: job for job in response.json()["jobs"]}


async def test_status_lists_each_job_with_its_last_and_next_run(
    client: httpx.AsyncClient,
) -> None:
    """Each job: its plugin, schedule, runs, last run and duration, last error, next run."""

    async def ran() -> bool:
        jobs = await _jobs(client)
        return bool(jobs["poll"]["runs"] >= 2 and jobs["push-orders"]["failures"] >= 2)

    await eventually(ran, timeout=10)
    jobs = await _jobs(client)
    assert sorted(jobs) == ["digest", "poll", "push-orders"]
    assert {job["owner"] for job in jobs.values()} == {"partner.PartnerPlugin"}
    poll, push, digest = jobs["poll"], jobs["push-orders"], jobs["digest"]
    assert (poll["kind"], poll["schedule"]) == ("every", "every 0.05s")
    assert poll["last_error"] is None and poll["failures"] == 0
    assert poll["last_run"] > 1e9 and 0 <= poll["last_duration"] < 5
    assert poll["next_run"] > poll["last_run"]
    assert push["last_error"] == "RuntimeError: partner said 503"
    assert push["runs"] >= push["failures"] >= 2
    assert (digest["kind"], digest["schedule"]) == ("cron", "cron 0 9 * * MON-FRI")
    assert (digest["runs"], digest["last_run"], digest["last_duration"]) == (0, None, None)
    due = datetime.fromtimestamp(digest["next_run"], UTC)
    assert (due.hour, due.minute, due.second, due.weekday() < 5) == (9, 0, 0, True)
    assert set(poll) == {
        "owner",
        "name",
        "kind",
        "schedule",
        "runs",
        "failures",
        "skips",
        "last_run",
        "last_duration",
        "last_error",
        "next_run",
        "running",
    }


async def test_status_has_no_jobs_without_a_scheduler(boot: Boot) -> None:
    """A project without the scheduler tool answers an empty job list."""
    system = await boot()
    response = await system.client.get("/system/status")
    assert response.json()["jobs"] == []


async def test_dashboard_renders_the_jobs_of_status(client: httpx.AsyncClient) -> None:
    """The page has a jobs panel, and its script fills it from ``/system/status``'s jobs."""
    page = (await client.get("/system/dashboard")).text
    assert 'id="jobs-panel"' in page and '<table id="jobs">' in page
    script = (await client.get("/system/dashboard/dashboard.js")).text
    assert "renderJobs(status.jobs || [])" in script
    for field in ("schedule", "last_run", "last_duration", "last_error", "next_run"):
        assert f"job.{field}" in script


def test_dashboard_shows_jobs_in_a_browser(
    browser: Browser,
    make_project: ProjectFactory,
) -> None:
    """In Chromium the jobs panel lists each job with its schedule, last run, next run and
    the last error of the failing one (the panel refreshes while jobs run)."""
    from playwright.sync_api import expect

    root = make_project(
        {"app.py": APP, "domains/partner/plugins/partner_plugin.py": JOBS},
        tools=["config", "logger", "http", "scheduler", "system"],
    )
    env = {"MICROCORE_ENV": "development", "LOG_LEVEL": "CRITICAL"}
    with serve(root, env) as base, open_page(browser, f"{base}/system/dashboard") as (page, errors):
        poll = page.locator('#jobs tr[data-job="partner.PartnerPlugin/poll"]')
        expect(poll).to_be_visible(timeout=WAIT_MS)
        expect(poll.locator(".schedule")).to_have_text("every 0.05s")
        expect(poll.locator(".next-run")).not_to_have_text("next —")
        push = page.locator('#jobs tr[data-job="partner.PartnerPlugin/push-orders"]')
        expect(push.locator(".error")).to_have_text(
            "RuntimeError: partner said 503", timeout=WAIT_MS
        )
        expect(push.locator(".last-run")).not_to_have_text("last never")
        digest = page.locator('#jobs tr[data-job="partner.PartnerPlugin/digest"]')
        expect(digest.locator(".schedule")).to_have_text("cron 0 9 * * MON-FRI")
        expect(digest.locator(".last-run")).to_have_text("last never")
        expect(digest.locator(".status")).to_have_text("waiting")
        expect(push.locator(".status")).to_have_text("failed")
        expect(page.locator("#no-jobs")).to_be_hidden()
        assert errors == []
