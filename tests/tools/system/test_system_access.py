"""Who may read /system/*: open in development; elsewhere the token or 401 (health: always)."""

from __future__ import annotations

import pytest

from tests.tools.system.conftest import PRODUCTION, TOKEN, Boot

GUARDED = (
    "/system/status",
    "/system/routes",
    "/system/events",
    "/system/graph",
    "/system/metrics",
    "/system/feed",
    "/system/dashboard/dashboard.js",
)


async def test_access_guarded_routes_refuse_without_token_outside_development(boot: Boot) -> None:
    """Without a token every guarded route answers 401 with the error shape and a challenge."""
    system = await boot(settings=PRODUCTION)
    for path in GUARDED:
        response = await system.client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized", path
        assert response.headers["www-authenticate"].startswith("Bearer"), path


async def test_access_wrong_token_is_refused(boot: Boot) -> None:
    """A wrong bearer token or cookie gets 401."""
    system = await boot(settings=PRODUCTION)
    bearer = {"Authorization": "Bearer not-the-token"}
    assert (await system.client.get("/system/status", headers=bearer)).status_code == 401
    system.client.cookies.set("system_token", "not-the-token")
    assert (await system.client.get("/system/status")).status_code == 401


@pytest.mark.parametrize("path", [p for p in GUARDED if p != "/system/feed"])
async def test_access_bearer_token_opens_guarded_routes(boot: Boot, path: str) -> None:
    """The right bearer token opens every guarded route."""
    system = await boot(settings=PRODUCTION)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await system.client.get(path, headers=headers)).status_code == 200


async def test_access_cookie_opens_the_dashboard_and_its_api(boot: Boot) -> None:
    """The system_token cookie (what a browser sends) opens the page, its assets and the API."""
    system = await boot(settings=PRODUCTION)
    system.client.cookies.set("system_token", TOKEN)
    page = await system.client.get("/system/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert (await system.client.get("/system/dashboard/dashboard.css")).status_code == 200
    assert (await system.client.get("/system/graph")).status_code == 200


async def test_access_dashboard_without_token_shows_a_token_page(boot: Boot) -> None:
    """A browser without the cookie gets a 401 HTML page asking for the token, not the dashboard."""
    system = await boot(settings=PRODUCTION)
    page = await system.client.get("/system/dashboard")
    assert page.status_code == 401
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "SYSTEM_TOKEN" in page.text
    assert "/system/feed" not in page.text


async def test_access_without_configured_token_everything_guarded_is_refused(boot: Boot) -> None:
    """Outside development with no SYSTEM_TOKEN set, any bearer value is refused (never open)."""
    system = await boot(settings={"MICROCORE_ENV": "production"})
    for sent in ("", " ", "anything"):
        headers = {"Authorization": f"Bearer {sent}"}
        assert (await system.client.get("/system/status", headers=headers)).status_code == 401
    assert (await system.client.get("/system/dashboard")).status_code == 401


async def test_access_health_is_always_open(boot: Boot) -> None:
    """/system/health needs no token, so load balancers can probe it."""
    system = await boot(settings=PRODUCTION)
    response = await system.client.get("/system/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "tools": [], "plugins": [], "services": {}}
    assert (await system.client.get("/system/live")).json() == {"status": "ok"}


async def test_access_development_is_open(boot: Boot) -> None:
    """In development every system route answers without a token."""
    system = await boot()  # the test settings are development
    for path in [p for p in GUARDED if p != "/system/feed"] + ["/system/dashboard"]:
        assert (await system.client.get(path)).status_code == 200, path


async def test_access_token_with_non_ascii_characters_is_accepted(boot: Boot) -> None:
    """A SYSTEM_TOKEN with non-ASCII characters, sent as UTF-8, is accepted."""
    token = "s3cret-pässwört"
    system = await boot(settings={"MICROCORE_ENV": "production", "SYSTEM_TOKEN": token})
    headers = {b"Authorization": b"Bearer " + token.encode("utf-8")}
    response = await system.client.get("/system/status", headers=headers)
    assert response.status_code == 200
