"""Trusted proxies: ``context.client`` from ``X-Forwarded-For`` only via HTTP_TRUSTED_PROXIES."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from microcore._dev.devserver import dev_command
from microcore.tooling import ConfigurationError
from tests.conftest import ProjectFactory
from tests.support import free_port, poll_url
from tools.http._proxies import TrustedProxies

from .conftest import Serve, Served

WHOAMI = {
    "app.py": "from microcore import create_app\n\napp = create_app()\n",
    "domains/net/plugins/whoami_plugin.py": """
    from microcore import Plugin

    class WhoamiPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/whoami", "GET", self.whoami)

        async def whoami(self, data, context):
            return {
                "client": context.client,
                "request_client": context.request.client.host,
                "scheme": context.request.url.scheme,
            }
    """,
}
TRUSTED = {"HTTP_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8:1::/48"}


async def ask(served: Served, peer: str, headers: list[tuple[str, str]]) -> dict[str, str]:
    """``GET /whoami`` as sent by ``peer`` with ``headers``."""
    transport = httpx.ASGITransport(app=served.running.app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/whoami", headers=headers)
    answer: dict[str, str] = response.json()
    return answer


async def test_proxies_forwarded_for_is_ignored_without_trusted_proxies(serve: Serve) -> None:
    """With no HTTP_TRUSTED_PROXIES, ``X-Forwarded-For`` changes nothing: the peer is the client."""
    served = await serve(WHOAMI)
    answer = await ask(served, "10.0.0.2", [("x-forwarded-for", "6.6.6.6")])
    assert answer == {"client": "10.0.0.2", "request_client": "10.0.0.2", "scheme": "http"}


async def test_proxies_spoofing_from_an_untrusted_peer_is_ignored(serve: Serve) -> None:
    """A client that is not a trusted proxy cannot choose its address or scheme."""
    served = await serve(WHOAMI, settings=TRUSTED)
    headers = [("x-forwarded-for", "10.0.0.9"), ("x-forwarded-proto", "https")]
    answer = await ask(served, "203.0.113.9", headers)
    assert answer == {"client": "203.0.113.9", "request_client": "203.0.113.9", "scheme": "http"}


async def test_proxies_trusted_chain_is_walked_from_the_right(serve: Serve) -> None:
    """From a trusted peer the header is walked from the right past trusted hops: the first
    untrusted address is the client, and what the client itself put first is ignored."""
    served = await serve(WHOAMI, settings=TRUSTED)
    cases = [
        ("198.51.100.7, 10.0.0.3", "198.51.100.7"),
        ("6.6.6.6, 198.51.100.7, 10.0.0.3", "198.51.100.7"),  # 6.6.6.6: the client's own claim
        ("10.0.0.9, 10.0.0.3", "10.0.0.9"),  # every hop trusted: the first one
        ("198.51.100.7:5555", "198.51.100.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("198.51.100.7, unknown", "10.0.0.2"),  # no address: the last trusted hop
    ]
    for forwarded, client in cases:
        answer = await ask(served, "10.0.0.2", [("x-forwarded-for", forwarded)])
        assert answer["client"] == client, forwarded
        assert answer["request_client"] == client
    split = [("x-forwarded-for", "198.51.100.7"), ("x-forwarded-for", "10.0.0.3")]
    assert (await ask(served, "10.0.0.2", split))["client"] == "198.51.100.7"
    ipv6 = await ask(served, "2001:db8:1::5", [("x-forwarded-for", "198.51.100.8")])
    assert ipv6["client"] == "198.51.100.8"
    proto = await ask(served, "10.0.0.2", [("x-forwarded-proto", "https")])
    assert (proto["client"], proto["scheme"]) == ("10.0.0.2", "https")


def test_proxies_bad_network_is_a_clear_boot_error() -> None:
    """A bad entry in HTTP_TRUSTED_PROXIES is refused at setup, quoted, with an example."""
    assert TrustedProxies.parse("") is None
    for bad in ("10.0.0.1/8", "proxy.internal", "10.0.0.0/33"):
        with pytest.raises(ConfigurationError, match="HTTP_TRUSTED_PROXIES") as caught:
            TrustedProxies.parse(f"127.0.0.1, {bad}")
        assert repr(bad) in str(caught.value)
        assert "e.g. HTTP_TRUSTED_PROXIES=" in str(caught.value)


async def test_proxies_bad_network_fails_the_http_tool(serve: Serve) -> None:
    """The http tool does not start with a bad HTTP_TRUSTED_PROXIES, naming the entry."""
    served = await serve(WHOAMI, settings={"HTTP_TRUSTED_PROXIES": "10.0.0.1/8"})
    record = served.kernel.tools["http"]
    assert record.status == "failed"
    assert "'10.0.0.1/8'" in record.error.message


def test_proxies_trust_cache_stays_bounded() -> None:
    """The per-address trust cache is bounded (a flood of addresses cannot grow it)."""
    proxies = TrustedProxies.parse("10.0.0.0/8")
    assert proxies is not None
    for n in range(3000):
        proxies.trusts(f"192.0.{n // 256}.{n % 256}")
    assert len(proxies._known) <= 1024
    assert proxies.trusts("10.1.2.3") and not proxies.trusts("not-an-address")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("trusted", "client"), [("", "127.0.0.1"), ("127.0.0.1", "6.6.6.6")], ids=["off", "on"]
)
def test_proxies_dev_server_leaves_forwarded_headers_to_the_app(
    make_project: ProjectFactory, tmp_path: Path, trusted: str, client: str
) -> None:
    """Under uvicorn as ``microcore dev`` runs it, a local process cannot set the client address
    (uvicorn's own default trusts 127.0.0.1); only HTTP_TRUSTED_PROXIES can."""
    root = make_project(WHOAMI, tools=["config", "logger", "http"])
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    env = {**os.environ, "MICROCORE_ENV": "development", "HTTP_TRUSTED_PROXIES": trusted}
    process = subprocess.Popen(
        dev_command(host="127.0.0.1", port=port), cwd=root, env=env, stdout=log, stderr=log
    )
    try:
        base = f"http://127.0.0.1:{port}"
        poll_url(f"{base}/whoami", process=process)
        response = httpx.get(f"{base}/whoami", headers={"x-forwarded-for": "6.6.6.6"})
        assert response.json()["client"] == client
    finally:
        process.terminate()
        process.wait(10)
        log.close()
