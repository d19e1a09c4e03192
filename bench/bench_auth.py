"""What ``auth=`` and ``rate=`` cost per request: the same endpoint open, behind a token, a role,
the cookie with its CSRF check, and a rate limit (memory state).

In process, no network: the app is called through ASGI with a prepared scope, so the
table shows the http tool's own work per request (routing, token check, handler, encode)
and the difference is what the check adds. The verifier is the auth tool's (PyJWT,
HS256). Rounds interleave the rows so machine noise hits every row alike; the table
shows the median over rounds of the mean per request.

    python bench/bench_auth.py                 # 7 rounds of 20,000 requests per row
    python bench/bench_auth.py --rounds 3 --requests 5000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import table  # noqa: E402 - after the path is set
from microcore.testing import start_app  # noqa: E402

SECRET = "bench-auth-secret-" + "s" * 32
PLUGIN = """
from microcore import Plugin

class BenchPlugin(Plugin):
    def __init__(self, http, auth):
        self.http, self.auth = http, auth

    async def on_boot(self):
        self.http.add_endpoint("/open", "GET", self.hello)
        self.http.add_endpoint("/open", "POST", self.hello)
        self.http.add_endpoint("/private", "GET", self.hello, auth=True)
        self.http.add_endpoint("/private", "POST", self.hello, auth=True)
        self.http.add_endpoint("/admin", "GET", self.hello, auth="admin")
        self.http.add_endpoint("/limited", "GET", self.hello, rate="1000000000/minute")

    async def hello(self, data, context):
        return {"hello": "world"}
"""


def project(workdir: Path) -> Path:
    root = workdir / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    for tool in ("config", "logger", "state", "http", "auth"):
        shutil.copytree(ROOT / "tools" / tool, root / "tools" / tool, ignore=ignore)
    (root / "tools" / "__init__.py").write_text("")
    plugins = root / "domains" / "bench" / "plugins"
    plugins.mkdir(parents=True)
    (root / "domains" / "__init__.py").write_text("")
    (root / "domains" / "bench" / "__init__.py").write_text("")
    (plugins / "bench_plugin.py").write_text(PLUGIN)
    return root


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("bench", 80),
    }


async def measure(app: Any, request: dict[str, Any], count: int) -> tuple[float, int]:
    """Mean seconds per request over ``count`` requests, and the last status."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    started = time.perf_counter()
    for _ in range(count):
        await app(dict(request), receive, send)
    return (time.perf_counter() - started) / count, status


async def main(rounds: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = {"AUTH_SECRET": SECRET, "HTTP_ACCESS_LOG": "false", "LOG_LEVEL": "WARNING"}
        running = await start_app(project(Path(tmp)), settings=settings)
        try:
            auth = running.kernel.tool("auth")
            token = auth.issue_token(7, claims={"roles": ["admin"]})
            bearer = [(b"authorization", f"Bearer {token}".encode())]
            cookie = [(b"cookie", f"access_token={token}; csrf_token=c5rf".encode())]
            rows = {
                "GET /open (no token)": scope("GET", "/open", []),
                "GET /private, auth=True, bearer": scope("GET", "/private", bearer),
                "GET /private, auth=True, cookie": scope("GET", "/private", cookie),
                "GET /admin, auth='admin', bearer": scope("GET", "/admin", bearer),
                "POST /open (no token)": scope("POST", "/open", []),
                "POST /private, cookie + X-CSRF-Token": scope(
                    "POST", "/private", [*cookie, (b"x-csrf-token", b"c5rf")]
                ),
                "GET /limited, rate= (memory state)": scope("GET", "/limited", []),
            }
            samples: dict[str, list[float]] = {name: [] for name in rows}
            for name, request in rows.items():  # warm-up, and every row must answer 200
                _, status = await measure(running.app, request, 500)
                if status != 200:
                    sys.exit(f"{name} answered {status}, not 200")
            for _ in range(rounds):
                for name, request in rows.items():
                    seconds, _ = await measure(running.app, request, requests)
                    samples[name].append(seconds)
        finally:
            await running.stop()
    base = {"GET": statistics.median(samples["GET /open (no token)"])}
    base["POST"] = statistics.median(samples["POST /open (no token)"])
    lines = []
    for name, values in samples.items():
        median = statistics.median(values)
        extra = median - base[name.split()[0]]
        lines.append((name, f"{median * 1e6:.1f}", f"{extra * 1e6:+.1f}"))
    print(
        table(
            f"auth= and rate= per request, in process ({rounds} rounds x {requests:,} requests; "
            "median of round means)",
            ("endpoint", "µs/request", "vs open"),
            lines,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000)
    options = parser.parse_args()
    asyncio.run(main(options.rounds, options.requests))
