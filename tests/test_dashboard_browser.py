"""The dashboard in a real browser: headless Debian Chromium, driven by Playwright.

The real app runs under uvicorn (``tests.support.serve``); the browser is the
system's ``/usr/bin/chromium`` (``apt-get install -y chromium``), never a
browser Playwright downloads. Without Chromium or the ``playwright`` package the
tests skip, saying what is missing; under ``CI=true`` they fail instead
(``.ci/run`` installs both). The screenshot lands in ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.support import serve

if TYPE_CHECKING:  # the package is optional at run time: the tests skip without it
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
WAIT_MS = 15_000  # for the page to show something: generous, the machine may be busy


@contextmanager
def open_page(browser: Browser, url: str) -> Iterator[tuple[Page, list[str]]]:
    """A page at ``url`` and the list its script errors go to; closed on exit.

    Close it before the server stops: uvicorn lets open responses finish before it
    exits, and the dashboard's live feed never finishes on its own.
    """
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(url)
        yield page, errors
    finally:
        page.close()


def test_dashboard_lists_plugins_and_shows_events_live(browser: Browser, tmp_path: Path) -> None:
    """The page lists plugins, draws the graph and shows a new product's event without a reload."""
    from playwright.sync_api import expect

    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "MICROCORE_ENV": "development"}
    with serve(REPO, env) as base, open_page(browser, f"{base}/system/dashboard") as (page, errors):
        creator = page.locator('#plugins tr[data-plugin="products.CreateProductPlugin"]')
        expect(creator).to_be_visible(timeout=WAIT_MS)
        expect(creator.locator(".status")).to_have_text("ok")
        expect(page.locator("#health")).to_have_text("healthy")
        expect(page.locator("#graph .node.event", has_text="product.created")).to_be_visible()
        expect(page.locator("#connection")).to_have_text("live", timeout=WAIT_MS)

        created = httpx.post(f"{base}/products", json={"name": "Lamp", "price": 9.5}, timeout=10)
        assert created.status_code == 201

        event = page.locator('#feed li.event[data-name="product.created"]').first
        expect(event).to_be_visible(timeout=WAIT_MS)
        expect(event).to_contain_text("products.CreateProductPlugin")
        expect(event).to_contain_text('"name":"Lamp"')
        request = page.locator("#feed li.request", has_text="POST /products → 201").first
        expect(request).to_be_visible(timeout=WAIT_MS)
        assert event.get_attribute("data-corr") == request.get_attribute("data-corr")

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert errors == []


def test_dashboard_outside_development_opens_with_the_token_cookie(
    browser: Browser, tmp_path: Path
) -> None:
    """In production the page asks for SYSTEM_TOKEN, keeps it as a cookie, then goes live."""
    from playwright.sync_api import expect

    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "MICROCORE_ENV": "production",
        "SYSTEM_TOKEN": "browser-s3cret",
    }
    with serve(REPO, env) as base, open_page(browser, f"{base}/system/dashboard") as (page, errors):
        expect(page.locator("h1")).to_have_text("System token needed", timeout=WAIT_MS)
        page.fill("#token", "browser-s3cret")
        page.click("button[type=submit]")
        expect(
            page.locator('#plugins tr[data-plugin="products.CreateProductPlugin"]')
        ).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#connection")).to_have_text("live", timeout=WAIT_MS)
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["system_token"]["path"] == "/system"
        # the 401 of the first visit is the only console error the page may show
        assert all("401" in error for error in errors), errors
