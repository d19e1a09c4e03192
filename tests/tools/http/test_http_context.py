"""context: the request seen by a handler, and the response it shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from microcore.tooling import Owner
from tools.http import Context

from .conftest import Serve

CONTEXT = {
    "domains/a/plugins/context_plugin.py": """
    import structlog
    from microcore import Plugin
    from microcore.tooling import current_correlation_id

    class ContextPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/whoami", "GET", self.whoami)
            self.http.add_endpoint("/form", "POST", self.form)
            self.http.add_endpoint("/cookie", "POST", self.cookie)
            self.http.add_endpoint("/logout", "POST", self.logout)
            self.http.add_endpoint("/go", "GET", self.go)
            self.http.add_endpoint("/headers", "GET", self.headers)
            self.http.add_endpoint("/ids", "GET", self.ids)
            self.http.add_endpoint("/created", "POST", self.created)

        async def whoami(self, data, context):
            return {"client": context.client, "agent": context.headers.get("user-agent"),
                    "identity": context.identity, "method": context.method,
                    "path": context.path, "url": str(context.request.url)}

        async def form(self, data, context):
            body = await context.request.body()
            return {"body": body.decode(), "data": data}

        async def cookie(self, data, context):
            context.set_cookie("session", "abc", max_age=60)
            context.set_cookie("theme", "dark", secure=False, httponly=False, samesite="strict")
            return {"cookies": context.cookies}

        async def logout(self, data, context):
            context.delete_cookie("session")
            return None

        async def go(self, data, context):
            context.redirect("/elsewhere", 303)

        async def headers(self, data, context):
            context.set_header("X-Custom", "one")
            context.set_header("X-Custom", "two")
            return {"ok": True}

        async def ids(self, data, context):
            return {"request_id": context.request_id,
                    "correlation_id": current_correlation_id(),
                    "log_context": structlog.contextvars.get_contextvars()}

        async def created(self, data, context):
            context.set_status(201)
            return None
    """
}


async def test_context_exposes_request_client_and_headers(serve: Serve) -> None:
    """A handler sees the client address, headers, method, path and the Starlette request."""
    served = await serve(CONTEXT)
    response = await served.client.get("/whoami", headers={"User-Agent": "probe/1"})
    assert response.json() == {
        "client": "127.0.0.1",
        "agent": "probe/1",
        "identity": None,
        "method": "GET",
        "path": "/whoami",
        "url": "http://testserver/whoami",
    }


async def test_context_request_body_is_readable_after_decoding(serve: Serve) -> None:
    """context.request.body() still returns the body the tool already read."""
    served = await serve(CONTEXT)
    response = await served.client.post("/form", json={"a": 1})
    assert response.json() == {"body": '{"a":1}', "data": {"a": 1}}


async def test_context_set_cookie_is_secure_by_default(serve: Serve) -> None:
    """set_cookie defaults to Secure, HttpOnly and SameSite=Lax; each can be relaxed."""
    served = await serve(CONTEXT)
    response = await served.client.post("/cookie", headers={"Cookie": "old=1"})
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("session="))
    assert "Secure" in session and "HttpOnly" in session and "SameSite=Lax" in session
    assert "Max-Age=60" in session and "Path=/" in session
    theme = next(c for c in cookies if c.startswith("theme="))
    assert "Secure" not in theme and "HttpOnly" not in theme and "SameSite=Strict" in theme
    assert response.json() == {"cookies": {"old": "1"}}


async def test_context_delete_cookie_expires_it(serve: Serve) -> None:
    """delete_cookie sends the cookie back empty with Max-Age=0."""
    served = await serve(CONTEXT)
    response = await served.client.post("/logout")
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("session=") and "Max-Age=0" in cookie


async def test_context_redirect_sets_status_and_location(serve: Serve) -> None:
    """redirect answers the status with a Location header."""
    served = await serve(CONTEXT)
    response = await served.client.get("/go")
    assert response.status_code == 303
    assert response.headers["location"] == "/elsewhere"


async def test_context_set_header_adds_each_value(serve: Serve) -> None:
    """set_header adds a header; calling it again adds another value."""
    served = await serve(CONTEXT)
    response = await served.client.get("/headers")
    assert response.headers.get_list("x-custom") == ["one", "two"]


async def test_context_set_status_applies_to_none_result(serve: Serve) -> None:
    """A status set by the handler replaces 204 for a None result."""
    served = await serve(CONTEXT)
    assert (await served.client.post("/created")).status_code == 201


async def test_context_request_id_is_generated_and_returned(serve: Serve) -> None:
    """Without X-Request-ID a fresh id is made, returned and used as correlation id."""
    served = await serve(CONTEXT)
    response = await served.client.get("/ids")
    body = response.json()
    assert len(body["request_id"]) == 32
    assert response.headers["x-request-id"] == body["request_id"]
    assert body["correlation_id"] == body["request_id"]
    assert body["log_context"] == {"request_id": body["request_id"]}


async def test_context_request_id_from_client_is_honoured(serve: Serve) -> None:
    """A well-formed X-Request-ID from the client is kept; a malformed one is replaced."""
    served = await serve(CONTEXT)
    response = await served.client.get("/ids", headers={"X-Request-ID": "abc-123"})
    assert response.json()["request_id"] == "abc-123"
    assert response.headers["x-request-id"] == "abc-123"
    bad = await served.client.get("/ids", headers={"X-Request-ID": "bad id\twith spaces"})
    assert bad.json()["request_id"] != "bad id\twith spaces"


async def test_context_request_id_does_not_leak_after_request(serve: Serve) -> None:
    """The request id is unbound from the log context once the request is answered."""
    served = await serve(CONTEXT)
    await served.client.get("/ids")
    assert "request_id" not in structlog.contextvars.get_contextvars()


async def test_context_error_responses_carry_request_id(serve: Serve) -> None:
    """Even a 404 carries the X-Request-ID header."""
    served = await serve(CONTEXT)
    response = await served.client.get("/missing", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "r-1"


async def test_context_identity_comes_only_from_the_verified_token(serve: Serve) -> None:
    """Middleware cannot set context.identity; the token verifier the http tool asks does."""
    served = await serve({})
    owner = Owner("tools.test")
    owner.activate()
    handle = served.http.bind(owner)
    refused: list[str] = []

    async def secret(data: Any, context: Any) -> Any:
        return {"user": context.identity, "auth": context.auth}

    async def forge(context: Any, call_next: Any) -> Any:
        try:
            context.identity = {"sub": "mallory"}
        except AttributeError as exc:
            refused.append(str(exc))
        return await call_next()

    handle.add_middleware(forge)
    served.http.use_token_verifier(lambda token: {"sub": "alice"} if token == "good" else None)
    handle.add_endpoint("/secret", "GET", secret, auth=True)
    assert (await served.client.get("/secret")).status_code == 401
    response = await served.client.get("/secret", headers={"Authorization": "Bearer good"})
    assert response.json() == {"user": {"sub": "alice"}, "auth": True}
    assert "set only from a token the auth tool verified" in refused[0]


def _bare_context() -> Context:
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}

    async def receive() -> dict[str, Any]:  # pragma: no cover - never read
        return {"type": "http.disconnect"}

    return Context(scope, receive, "rid")


def test_context_refuses_impossible_statuses_and_samesite() -> None:
    """set_status, redirect and set_cookie refuse values no HTTP response can carry."""
    context = _bare_context()
    with pytest.raises(ValueError, match="between 100 and 599, got 42"):
        context.set_status(42)
    with pytest.raises(ValueError, match="must be 3xx, got 200"):
        context.redirect("/", 200)
    with pytest.raises(ValueError, match="samesite must be"):
        context.set_cookie("a", "b", samesite="loose")  # type: ignore[arg-type]  # the point
    assert repr(context) == "<Context GET /x>"


def test_context_cookie_with_expiry_date_and_domain() -> None:
    """set_cookie writes an HTTP date for a datetime expiry, the domain, and no SameSite if None."""
    context = _bare_context()
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    context.set_cookie("a", "b", expires=when, domain="example.com", samesite=None)
    assert context.response_headers is not None
    header = context.response_headers[0][1].decode()
    assert "expires=Wed, 02 Jan 2030 03:04:05 GMT" in header
    assert "Domain=example.com" in header
    assert "SameSite" not in header
