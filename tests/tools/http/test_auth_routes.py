"""auth= on endpoints and websockets: bearer or cookie, 401 vs 403, identity from the token only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from microcore._core import logs
from microcore.testing import start_app
from microcore.tooling import Owner, RegistrationError

if TYPE_CHECKING:
    from tools.auth.auth_tool import AuthTool
    from tools.http.http_tool import HttpTool

from .conftest import AUTH_TOOLS, SECRET, Boot
from .test_http_streaming import FakeSocket, ws_scope

APP = {
    "domains/a/plugins/secure_plugin.py": """
    from microcore import Plugin

    class SecurePlugin(Plugin):
        def __init__(self, http, auth):
            self.http, self.auth = http, auth

        async def on_boot(self):
            self.http.add_endpoint("/login", "POST", self.login)
            self.http.add_endpoint("/me", "GET", self.me, auth=True)
            self.http.add_endpoint("/admin", "GET", self.me, auth="admin")
            self.http.add_endpoint("/notes", "POST", self.me, auth=True)
            self.http.add_endpoint("/open", "GET", self.me)
            self.http.add_endpoint("/open", "POST", self.me)
            self.http.add_websocket("/ws", self.chat, auth=True)

        async def login(self, data, context):
            token = self.auth.issue_token(data["user"], claims={"roles": data.get("roles", [])})
            csrf = self.auth.set_session_cookies(context, token)
            return {"token": token, "csrf": csrf}

        async def me(self, data, context):
            return {"identity": context.identity, "data": data}

        async def chat(self, websocket):
            await websocket.accept()
            await websocket.send_json(websocket.scope["identity"])
            await websocket.close()
    """
}


async def _login(client: httpx.AsyncClient, user: str = "7", roles: list[str] | None = None) -> Any:
    response = await client.post("/login", json={"user": user, "roles": roles or []})
    assert response.status_code == 200
    return response.json()


async def test_auth_bearer_token_fills_identity(boot: Boot) -> None:
    """A valid bearer token answers with context.identity = its verified claims."""
    _, client = await boot(APP)
    token = (await _login(client))["token"]
    client.cookies.clear()
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["identity"]["sub"] == "7"


async def test_auth_missing_or_bad_token_answers_401(boot: Boot) -> None:
    """No token, a garbage one and one signed by another key: 401 in the error shape."""
    _, client = await boot(APP)
    response = await client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    for token in ("garbage", "a.b.c", _foreign_token()):
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert "invalid_token" in response.headers["www-authenticate"]


def _foreign_token() -> str:
    import jwt

    return jwt.encode({"sub": "1", "iat": 1, "exp": 2**40}, "y" * 48, algorithm="HS256")


async def test_auth_role_missing_answers_403_present_200(boot: Boot) -> None:
    """auth='admin': a valid token without the role is 403; with it, 200."""
    _, client = await boot(APP)
    user = (await _login(client, "1"))["token"]
    admin = (await _login(client, "2", ["admin"]))["token"]
    client.cookies.clear()
    response = await client.get("/admin", headers={"Authorization": f"Bearer {user}"})
    assert response.status_code == 403
    assert "role 'admin'" in response.json()["error"]["message"]
    response = await client.get("/admin", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200


async def test_auth_cookie_authenticates_safe_methods(boot: Boot) -> None:
    """The access_token cookie the login set authenticates a GET (no CSRF needed)."""
    _, client = await boot(APP)
    await _login(client)
    assert client.cookies.get("access_token")
    response = await client.get("/me")
    assert response.json()["identity"]["sub"] == "7"


async def test_csrf_cookie_post_needs_matching_header(boot: Boot) -> None:
    """A cookie-authenticated POST without X-CSRF-Token (or with a wrong one) is 403."""
    _, client = await boot(APP)
    csrf = (await _login(client))["csrf"]
    response = await client.post("/notes", json={})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    response = await client.post("/notes", json={}, headers={"X-CSRF-Token": "guess"})
    assert response.status_code == 403
    response = await client.post("/notes", json={}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert response.json()["identity"]["sub"] == "7"


async def test_csrf_bearer_requests_are_exempt(boot: Boot) -> None:
    """A bearer-authenticated POST needs no CSRF header (browsers never add it by themselves)."""
    _, client = await boot(APP)
    token = (await _login(client))["token"]
    client.cookies.clear()
    response = await client.post("/notes", json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_csrf_cookie_without_proof_is_anonymous_on_open_routes(boot: Boot) -> None:
    """On an open POST a cookie without the CSRF header does not authenticate (identity None)."""
    _, client = await boot(APP)
    csrf = (await _login(client))["csrf"]
    assert (await client.post("/open", json={})).json()["identity"] is None
    response = await client.post("/open", json={}, headers={"X-CSRF-Token": csrf})
    assert response.json()["identity"]["sub"] == "7"
    assert (await client.get("/open")).json()["identity"]["sub"] == "7"


async def test_auth_identity_cannot_be_forged_by_input(boot: Boot) -> None:
    """identity/_auth/sub fields in body, query and headers never become the identity."""
    _, client = await boot(APP)
    forged = {"identity": {"sub": "1", "roles": ["admin"]}, "_auth": "admin", "sub": "1"}
    response = await client.post(
        "/open?identity=admin&_auth=1&sub=1",
        json=forged,
        headers={"X-Identity": "admin", "X-User": "1", "X-Auth": "admin", "Identity": "1"},
    )
    assert response.json()["identity"] is None
    response = await client.get("/admin?identity=admin&roles=admin", headers={"X-Roles": "admin"})
    assert response.status_code == 401


async def test_auth_websocket_refused_before_accept_without_token(boot: Boot) -> None:
    """A websocket with auth=True and no token is closed with 1008 and never accepted."""
    running, _ = await boot(APP)
    socket = FakeSocket([])
    await running.app(ws_scope("/ws"), socket.receive, socket.send)
    assert [m["type"] for m in socket.sent] == ["websocket.close"]
    assert socket.sent[0]["code"] == 1008


async def test_auth_websocket_with_bearer_gets_identity(boot: Boot) -> None:
    """With a bearer token the websocket is accepted and sees the verified claims."""
    running, client = await boot(APP)
    token = (await _login(client))["token"]
    scope = ws_scope("/ws")
    scope["headers"] = [(b"authorization", f"Bearer {token}".encode())]
    socket = FakeSocket([])
    await running.app(scope, socket.receive, socket.send)
    assert socket.sent[0]["type"] == "websocket.accept"
    assert '"sub":"7"' in socket.sent[1]["text"]


async def test_auth_websocket_cookie_needs_same_origin(boot: Boot) -> None:
    """A cookie-authenticated websocket from another site's page is refused (1008)."""
    running, client = await boot(APP)
    token = (await _login(client))["token"]
    cookie = (b"cookie", f"access_token={token}".encode())
    for origin, accepted in ((b"http://evil.example", False), (b"http://testserver", True)):
        scope = ws_scope("/ws")
        scope["headers"] = [cookie, (b"origin", origin), (b"host", b"testserver")]
        socket = FakeSocket([])
        await running.app(scope, socket.receive, socket.send)
        assert (socket.sent[0]["type"] == "websocket.accept") is accepted


async def test_auth_websocket_cookie_from_a_listed_origin(boot: Boot) -> None:
    """With HTTP_WS_ORIGINS, a cookie websocket from a listed page of another host is accepted."""
    running, client = await boot(APP, settings={"HTTP_WS_ORIGINS": "https://app.example"})
    token = (await _login(client))["token"]
    scope = ws_scope("/ws")
    scope["headers"] = [
        (b"cookie", f"access_token={token}".encode()),
        (b"origin", b"https://app.example"),
        (b"host", b"api.example"),
    ]
    socket = FakeSocket([])
    await running.app(scope, socket.receive, socket.send)
    assert socket.sent[0]["type"] == "websocket.accept"


async def test_middleware_applies_to_websockets(boot: Boot) -> None:
    """add_middleware runs for websocket routes: a middleware refusal closes before accept."""
    running, _ = await boot(
        {
            "domains/a/plugins/gate_plugin.py": """
    from microcore import Plugin
    from tools.http import Forbidden

    class GatePlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_middleware(self.gate)
            self.http.add_websocket("/ws", self.chat)

        async def gate(self, context, call_next):
            if context.headers.get("x-key") == "deny":
                raise Forbidden("denied")
            if context.headers.get("x-key") == "answer":
                return {"no": "socket"}
            return await call_next()

        async def chat(self, websocket):
            await websocket.accept()
            await websocket.close()
    """
        }
    )
    for key, first in ((b"deny", "websocket.close"), (b"answer", "websocket.close")):
        scope = ws_scope("/ws")
        scope["headers"] = [(b"x-key", key)]
        socket = FakeSocket([])
        await running.app(scope, socket.receive, socket.send)
        assert socket.sent[0]["type"] == first
        assert socket.sent[0]["code"] == 1008
    socket = FakeSocket([])
    await running.app(ws_scope("/ws"), socket.receive, socket.send)
    assert socket.sent[0]["type"] == "websocket.accept"


async def test_auth_without_an_auth_tool_fails_registration(boot: Boot, make_project: Any) -> None:
    """auth= with no verifier installed is a registration error naming the auth tool."""
    root = make_project({}, tools=["config", "logger", "http"])
    running = await start_app(root)
    try:
        owner = Owner("tools.test")
        owner.activate()
        handle = cast("HttpTool", running.kernel.tool("http")).bind(owner)

        async def handler(data: Any, context: Any) -> Any:  # pragma: no cover - never served
            return None

        with pytest.raises(RegistrationError, match=r"auth=True needs a token verifier.*auth tool"):
            handle.add_endpoint("/x", "GET", handler, auth=True)
        with pytest.raises(RegistrationError, match="not a requirement"):
            handle.add_endpoint("/x", "GET", handler, auth=3)
        with pytest.raises(RegistrationError, match="state tool"):
            handle.add_endpoint("/x", "GET", handler, rate="1/second")
    finally:
        await running.stop()


async def test_auth_tool_refuses_to_start_without_a_strong_secret(make_project: Any) -> None:
    """Outside development: no AUTH_SECRET or a short one fails the tool, naming the setting."""
    root = make_project({}, tools=AUTH_TOOLS)
    for secret, reason in (("", "AUTH_SECRET is not set"), ("short", "has 5 bytes")):
        settings = {"MICROCORE_ENV": "production", "AUTH_SECRET": secret}
        running = await start_app(root, settings=settings)
        try:
            status = running.kernel.status().tools["auth"]
            assert status.status == "failed"
            assert status.error is not None and reason in status.error.message
        finally:
            await running.stop()


async def test_auth_tool_generates_a_development_secret_and_says_so(
    make_project: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """In development without AUTH_SECRET a per-process secret is made, with a log warning."""
    root = make_project({}, tools=AUTH_TOOLS)
    running = await start_app(root, settings={"AUTH_SECRET": ""})
    try:
        tool = cast("AuthTool", running.kernel.tool("auth"))
        assert tool.verify_token(tool.issue_token(1))["sub"] == "1"
        logs.flush()  # log lines are written by a background thread: wait for them
        assert "auth_secret_generated" in capfd.readouterr().err
    finally:
        await running.stop()


async def test_auth_tool_refuses_bad_ttl_and_short_previous_secret(make_project: Any) -> None:
    """AUTH_TOKEN_TTL must be positive; every AUTH_PREVIOUS_SECRETS entry 32 bytes or more."""
    root = make_project({}, tools=AUTH_TOOLS)
    cases = (
        ({"AUTH_TOKEN_TTL": "0"}, "AUTH_TOKEN_TTL must be a positive"),
        ({"AUTH_PREVIOUS_SECRETS": f"{SECRET}, tiny"}, "AUTH_PREVIOUS_SECRETS has 4 bytes"),
    )
    for settings, reason in cases:
        running = await start_app(root, settings={"AUTH_SECRET": SECRET, **settings})
        try:
            error = running.kernel.status().tools["auth"].error
            assert error is not None and reason in error.message
        finally:
            await running.stop()
