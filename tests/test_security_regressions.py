"""Regression tests for the attack classes found in the upstream design, run against this one.

* identity forgery: a body, query or header field (``identity``, ``_auth``, ``sub``,
  ``roles``, ``user``) overwriting the authenticated identity in a flat merge of inputs;
* stored XSS: the dashboard rendering a hostile event payload as HTML (a real browser);
* leaks: a stack trace, SQL or a secret in an error answer;
* JWT forgery: ``alg: none``, expired, wrong-key and tampered tokens against a real route.

IDOR (one user changing another's account) is pinned in
``tests/domains/users/test_users_api.py::test_one_user_cannot_rename_or_delete_another``.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from httpx import AsyncClient

from microcore.testing import RunningApp, start_app
from tests.support import serve
from tests.test_dashboard_browser import REPO, WAIT_MS, open_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser

PASSWORD = "correct horse battery"
FORGED_FIELDS = ("identity", "_auth", "auth", "sub", "roles", "user", "user_id", "claims")


async def _account(client: AsyncClient, email: str) -> tuple[int, str]:
    """Sign up and log in; the new account's id and a bearer token."""
    body = {"email": email, "password": PASSWORD, "name": "N"}
    user_id = (await client.post("/users", json=body)).json()["id"]
    login = await client.post("/users/login", json={"email": email, "password": PASSWORD})
    client.cookies.clear()
    return int(user_id), str(login.json()["token"])


# -- no weak secret in production --------------------------------------------------------


def test_production_without_auth_secret_refuses_to_serve_auth(tmp_path: Path) -> None:
    """Outside development without AUTH_SECRET the auth tool fails: health is 503 naming it,
    and the routes that need tokens are not served (their plugins fail), never left open."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "MICROCORE_ENV": "production",
        "SYSTEM_TOKEN": "s3cret",
    }
    with serve(REPO, env) as base, httpx.Client(base_url=base, timeout=10) as http:
        health = http.get("/system/health")
        assert health.status_code == 503
        assert "tool auth" in health.json()["error"]["message"]
        status = http.get("/system/status", headers={"Authorization": "Bearer s3cret"}).json()
        assert "AUTH_SECRET is not set" in status["tools"]["auth"]["error"]["message"]
        assert http.get("/users/me").status_code == 404
        assert http.post("/users/login", json={"email": "a@b.c", "password": "x"}).is_client_error
        assert http.get("/products").status_code == 200  # what needs no auth still serves


# -- identity forgery ---------------------------------------------------------------------


async def test_forged_identity_fields_never_authenticate(client: AsyncClient) -> None:
    """No token: identity-looking fields in the query, body or headers still get 401."""
    forged: dict[str, Any] = {name: {"sub": "1", "roles": ["admin"]} for name in FORGED_FIELDS}
    query = "&".join(f"{name}=1" for name in FORGED_FIELDS)
    headers = {f"X-{name.strip('_')}": "admin" for name in FORGED_FIELDS}
    headers |= {"X-User-Id": "1", "X-Forwarded-User": "admin", "X-Roles": "admin"}
    assert (await client.get(f"/users/me?{query}", headers=headers)).status_code == 401
    assert (await client.get(f"/users?{query}&roles=admin", headers=headers)).status_code == 401
    response = await client.request("DELETE", f"/users/1?{query}", json=forged, headers=headers)
    assert response.status_code == 401


async def test_forged_identity_fields_never_change_a_real_identity(client: AsyncClient) -> None:
    """With a user's token, fields naming another user or the admin role change nothing."""
    victim, _ = await _account(client, "victim@example.com")
    attacker, token = await _account(client, "mallory@example.com")
    bearer = {"Authorization": f"Bearer {token}", "X-Identity": str(victim), "X-Roles": "admin"}
    query = f"sub={victim}&identity={victim}&_auth=admin&roles=admin"
    me = await client.get(f"/users/me?{query}", headers=bearer)
    assert me.json()["id"] == attacker
    assert (await client.get(f"/users?{query}", headers=bearer)).status_code == 403
    forged = {"name": "pwned", "_auth": {"sub": str(victim)}, "identity": {"roles": ["admin"]}}
    patched = await client.patch(f"/users/{victim}?{query}", json=forged, headers=bearer)
    assert patched.status_code in (403, 422)
    assert (await client.delete(f"/users/{victim}?{query}", headers=bearer)).status_code == 403


# -- JWT forgery ---------------------------------------------------------------------------


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


async def test_forged_tokens_are_refused_by_a_real_route(client: AsyncClient) -> None:
    """alg none, expired, another key's, tampered and HS512 tokens all get 401 on /users/me."""
    user_id, token = await _account(client, "t@example.com")
    now = int(time.time())
    claims = {"sub": str(user_id), "roles": ["admin"], "iat": now, "exp": now + 600}
    head, payload, signature = token.split(".")
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "expired": jwt.encode({**claims, "exp": now - 60}, "k" * 48, algorithm="HS256"),
        "wrong key": jwt.encode(claims, "k" * 48, algorithm="HS256"),
        "tampered": f"{head}.{_b64(claims)}.{signature}",
        "bad signature": f"{head}.{payload}.{signature[:-4]}AAAA",
        "HS512": jwt.encode(claims, "k" * 64, algorithm="HS512"),
    }
    for name, bad in forged.items():
        response = await client.get("/users/me", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, name
        client.cookies.set("access_token", bad)
        assert (await client.get("/users/me")).status_code == 401, name
        client.cookies.clear()
    ok = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


# -- leaks in error answers ----------------------------------------------------------------

SECRET = "leak-canary-" + "z" * 40
LEAKY = {
    "domains/a/plugins/leaky_plugin.py": f"""
    from microcore import Plugin

    class LeakyPlugin(Plugin):
        def __init__(self, http, db, auth):
            self.http, self.db, self.auth = http, db, auth

        async def on_boot(self):
            self.http.add_endpoint("/crash", "GET", self.crash)
            self.http.add_endpoint("/sql", "GET", self.sql)
            self.http.add_endpoint("/dup", "POST", self.dup)
            self.http.add_endpoint("/token", "GET", self.token)
            self.http.add_middleware(self.middleware)

        async def crash(self, data, context):
            raise RuntimeError("password={SECRET} " + str(self.auth._secret))

        async def sql(self, data, context):
            return await self.db.query("SELECT s FROM no_such_table WHERE x = '{SECRET}'")

        async def dup(self, data, context):
            await self.db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT UNIQUE)")
            await self.db.execute("INSERT INTO t (v) VALUES ('{SECRET}')")
            await self.db.execute("INSERT INTO t (v) VALUES ('{SECRET}')")

        async def token(self, data, context):
            return self.auth.verify_token(context.headers.get("x-token", ""))

        async def middleware(self, context, call_next):
            if context.headers.get("x-break"):
                raise KeyError("{SECRET}")
            return await call_next()
    """
}


async def test_error_answers_carry_no_stack_trace_sql_or_secret(make_project: Any) -> None:
    """500s, database errors, token errors and middleware failures answer the error shape only."""
    root = make_project(LEAKY)
    settings = {"AUTH_SECRET": SECRET, "SYSTEM_TOKEN": SECRET, "MICROCORE_ENV": "production"}
    running: RunningApp = await start_app(root, settings=settings)
    transport = httpx.ASGITransport(app=running.app)
    try:
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            answers = [
                await client.get("/crash"),
                await client.get("/sql"),
                await client.post("/dup"),
                await client.get("/token", headers={"X-Token": "x.y.z"}),
                await client.get("/crash", headers={"X-Break": "1"}),
                await client.get("/system/status", headers={"Authorization": "Bearer nope"}),
            ]
    finally:
        await running.stop()
    assert [a.status_code for a in answers][:1] == [500]
    for answer in answers:
        text = answer.text
        assert answer.status_code >= 400, text
        assert set(answer.json()) == {"success", "error"}, text
        for leak in ("Traceback", 'File "', "SELECT", "INSERT", "no_such_table", SECRET, "z" * 40):
            assert leak not in text, (leak, text)


# -- stored XSS in the dashboard -------------------------------------------------------------

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_dashboard_shows_hostile_event_payloads_as_text(browser: Browser, tmp_path: Path) -> None:
    """An event payload full of HTML is shown as text in the live feed: no script runs."""
    from playwright.sync_api import expect

    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "MICROCORE_ENV": "development"}
    with serve(REPO, env) as base, open_page(browser, f"{base}/system/dashboard") as (page, _):
        expect(page.locator("#connection")).to_have_text("live", timeout=WAIT_MS)
        created = httpx.post(f"{base}/products", json={"name": HOSTILE, "price": 1}, timeout=10)
        assert created.status_code == 201
        event = page.locator('#feed li.event[data-name="product.created"]').first
        expect(event).to_be_visible(timeout=WAIT_MS)
        expect(event).to_contain_text("onerror")  # the markup is there, as text
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#feed img, #feed script").count() == 0
        page.reload()
        expect(page.locator("#connection")).to_have_text("live", timeout=WAIT_MS)
        assert page.evaluate("window.__pwned") is None
