"""Where an HTTP request's time goes, in-process: the ASGI apps called directly, no server.

wrk through a server measures what users get; this measures what the app itself costs per
request (CPU time of this process only, so it holds up on a busy machine), and can profile
it. Each app is called ``--requests`` times per endpoint with a prepared scope and a
``send`` that drops the messages::

    python bench/profile_http.py                          # CPU us per request, every app
    python bench/profile_http.py --profile microcore --endpoint ping   # + a cProfile top 25

Apps: ``raw`` (bench/apps/raw_asgi_app.py, the floor), ``microcore`` (the bench project in
production configuration, access log on, its lines to a temporary file),
``microcore-nolog`` (``HTTP_ACCESS_LOG=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "apps"), str(HERE)]
from bench_http import microcore_project  # noqa: E402 - bench/ joins sys.path just above

ENDPOINTS = {
    "ping": ("GET", "/ping", b"", b""),
    "items": ("GET", "/items/7", b"q=pen", b""),
    "post": ("POST", "/products", b"", b'{"name": "Pen", "price": 2.5}'),
}
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope_for(method: str, path: str, query: bytes, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
    if body:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
    }


async def measure(app: App, endpoint: str, requests: int) -> float:
    """CPU microseconds per request (this process), after a warm-up."""
    method, path, query, body = ENDPOINTS[endpoint]
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):
        await app(scope_for(method, path, query, body), receive, send)
    started = time.process_time()
    for _ in range(requests):
        await app(scope_for(method, path, query, body), receive, send)
    used = time.process_time() - started
    if statuses[-1] >= 300:
        raise SystemExit(f"{endpoint}: status {statuses[-1]}")
    return used / requests * 1e6


async def profile(app: App, args: argparse.Namespace) -> None:
    """A cProfile top 25 (exact calls, inflated by its overhead) or a pyinstrument tree
    (sampled, close to the real proportions) of ``--endpoint`` on ``app``."""
    if args.sampler == "pyinstrument":
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.0001, async_mode="disabled")
        sampler.start()
        await measure(app, args.endpoint, args.requests)
        sampler.stop()
        sys.stdout.write(sampler.output_text(unicode=False, show_all=False))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    await measure(app, args.endpoint, args.requests)
    profiler.disable()
    sys.stdout.write(f"== cProfile: {args.profile} {args.endpoint}\n")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="profile-http-"))
    os.environ["BENCH_DB"] = str(workdir / "raw.db")
    log = (workdir / "app.log").open("w")
    sys.stderr = log  # the access lines go to a file, as in production
    results: dict[str, dict[str, float]] = {}
    import bench_sqlite
    import raw_asgi_app

    async with bench_sqlite.lifespan(None):
        results["raw"] = {e: await measure(raw_asgi_app.app, e, args.requests) for e in ENDPOINTS}
    project = microcore_project(workdir)
    from microcore import create_app
    from microcore._app import running

    for name, access in (("microcore", "1"), ("microcore-nolog", "0")):
        environ = {
            "MICROCORE_ENV": "production",
            "DATABASE_URL": f"sqlite:///{workdir / name}.db",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "HTTP_ACCESS_LOG": access,
        }
        app = create_app(project, environ=environ)
        async with running(app.kernel):
            if name == args.profile:
                await profile(app, args)
            results[name] = {e: await measure(app, e, args.requests) for e in ENDPOINTS}
    sys.stderr = sys.__stderr__
    log.close()
    sys.stdout.write(f"\nCPU us per request, in-process ({args.requests} requests each)\n")
    sys.stdout.write(f"{'app':<18}" + "".join(f"{e:>10}" for e in ENDPOINTS) + "\n")
    for name, row in results.items():
        cells = "".join(f"{row[e]:>10.1f}" for e in ENDPOINTS)
        sys.stdout.write(f"{name:<18}{cells}\n")
    sys.stdout.write(f"{'x raw (cost)':<18}" + "".join(f"{'':>10}" for _ in ENDPOINTS) + "\n")
    for name in ("microcore", "microcore-nolog"):
        ratio = "".join(f"{results['raw'][e] / results[name][e]:>10.2f}" for e in ENDPOINTS)
        sys.stdout.write(f"{name:<18}{ratio}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", choices=["microcore", "microcore-nolog"])
    parser.add_argument("--sampler", choices=["cprofile", "pyinstrument"], default="cprofile")
    parser.add_argument("--endpoint", choices=list(ENDPOINTS), default="ping")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
