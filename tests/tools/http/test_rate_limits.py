"""rate= on endpoints: per identity or client, 429 with Retry-After, shared via the state tool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from microcore.testing import start_app
from microcore.tooling import Owner, RegistrationError
from tools.http._security import parse_rate

if TYPE_CHECKING:
    from tools.http.http_tool import HttpTool

from .conftest import AUTH_TOOLS, SECRET, Boot

LIMITED = {
    "domains/a/plugins/limited_plugin.py": """
    from microcore import Plugin

    class LimitedPlugin(Plugin):
        def __init__(self, http, auth):
            self.http, self.auth = http, auth

        async def on_boot(self):
            self.http.add_endpoint("/ping", "GET", self.ping, rate="3/minute")
            self.http.add_endpoint("/token/{user}", "GET", self.token)

        async def ping(self, data, context):
            return {"ok": True}

        async def token(self, data, context):
            return {"token": self.auth.issue_token(data["user"])}
    """
}


async def test_rate_limit_answers_429_with_retry_after(boot: Boot) -> None:
    """The fourth request in a minute is 429 in the error shape, with Retry-After seconds."""
    _, client = await boot(LIMITED)
    statuses = [(await client.get("/ping")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = await client.get("/ping")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_rate_limit_counts_each_identity_apart(boot: Boot) -> None:
    """An authenticated client has its own count, apart from the anonymous one of its address."""
    _, client = await boot(LIMITED)
    for _ in range(3):
        await client.get("/ping")
    assert (await client.get("/ping")).status_code == 429
    alice = (await client.get("/token/alice")).json()["token"]
    bob = (await client.get("/token/bob")).json()["token"]
    as_alice = {"Authorization": f"Bearer {alice}"}
    assert [(await client.get("/ping", headers=as_alice)).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    assert (await client.get("/ping", headers={"Authorization": f"Bearer {bob}"})).is_success


async def test_rate_limit_is_shared_by_replicas_through_redis(
    make_project: Any, redis_url: str, redis_prefix: str
) -> None:
    """Two replicas on one Redis share the count: 3 requests over both, the fourth is 429."""
    settings = {"AUTH_SECRET": SECRET, "STATE_URL": redis_url, "STATE_PREFIX": redis_prefix}
    root = make_project(LIMITED, tools=AUTH_TOOLS)
    first = await start_app(root, settings=settings)
    second = await start_app(root, settings=settings)
    try:
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=r.app), base_url="http://t")
            for r in (first, second)
        ]
        statuses = [(await clients[i % 2].get("/ping")).status_code for i in range(4)]
        assert statuses == [200, 200, 200, 429]
        for client in clients:
            await client.aclose()
    finally:
        await second.stop()
        await first.stop()


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [
        ("10/minute", 10, 60),
        ("1/second", 1, 1),
        (" 5 / 10 seconds ", 5, 10),
        ("100/Hours", 100, 3600),
    ],
)
def test_rate_parses_count_and_window(text: str, count: int, seconds: int) -> None:
    """'<count>/<unit>' and '<count>/<n><unit>' give the count and the window in seconds."""
    rate = parse_rate(text, "GET /x")
    assert rate is not None and (rate.count, rate.seconds) == (count, seconds)
    assert repr(rate) == f"Rate({text.strip()!r})"


@pytest.mark.parametrize(
    "text", ["10", "ten/minute", "0/minute", "10/0minutes", "10/fortnight", 10]
)
def test_rate_bad_strings_fail_registration(text: Any) -> None:
    """A rate that does not parse is a registration error showing the expected form."""
    with pytest.raises(RegistrationError, match=r"GET /x: rate=.* e\.g\. rate='10/minute'"):
        parse_rate(text, "GET /x")


async def test_rate_bad_string_fails_the_plugin_not_the_request(boot: Boot) -> None:
    """add_endpoint(..., rate='lots') raises at registration, before anything serves."""
    running, _ = await boot({})
    owner = Owner("tools.test")
    owner.activate()

    async def handler(data: Any, context: Any) -> Any:  # pragma: no cover - never served
        return None

    with pytest.raises(RegistrationError, match="rate='lots' is not a rate"):
        cast("HttpTool", running.kernel.tool("http")).bind(owner).add_endpoint(
            "/x", "GET", handler, rate="lots"
        )
