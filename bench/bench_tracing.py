"""Benchmark: what OpenTelemetry tracing costs per request, on and off, in the same run.

    python bench/bench_tracing.py [--requests 4000] [--rounds 3] [--before DIR]

The example app (this repository's ``domains/`` and ``tools/``) boots in production
configuration (``MICROCORE_ENV=production``, access log and metrics on, SQLite file) in a
fresh process per mode, and serves requests through its ASGI callable in-process (no
sockets, so the table shows the framework's own time per request):

* ``GET /products/{id}`` (one statement) and ``POST /products`` (validate, insert,
  publish ``product.created``, deliver it);
* ``off``: OpenTelemetry installed, not configured (what every app without it runs);
* ``on``: ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a local OTLP/HTTP receiver (a thread
  in the same process that answers 200), batch exporter as in production; every span
  sampled and exported;
* ``before`` (with ``--before DIR``): the same app from another checkout, e.g. the commit
  before tracing existed (``git worktree add /tmp/before <commit>``), so "off" can be
  compared with code that has no tracing seams at all.

Modes alternate over rounds; the table shows the median µs per request of each mode and
the difference. Log lines go to /dev/null (they are rendered, as in production).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _report import table  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _project(folder: Path, code: Path) -> Path:
    for name in ("tools", "domains"):
        shutil.copytree(code / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "app.py").write_text("from microcore import create_app\n\napp = create_app()\n")
    return folder


async def _measure(root: Path, requests: int, code: Path) -> dict[str, float]:
    sys.path.insert(0, str(code))
    from microcore import create_app
    from microcore._app import running

    app = create_app(root)
    body = json.dumps({"name": "Pen", "price": 2.5}).encode()

    async def call(method: str, path: str, payload: bytes = b"") -> int:
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
        if payload:
            headers.append((b"content-length", str(len(payload)).encode()))
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "scheme": "http",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
        return status

    results: dict[str, float] = {}
    async with running(app.kernel):
        assert await call("POST", "/products", body) == 201
        for label, method, path, payload in (
            ("GET /products/{id}", "GET", "/products/1", b""),
            ("POST /products", "POST", "/products", body),
        ):
            for _ in range(requests // 10):  # warm-up
                await call(method, path, payload)
            started = time.perf_counter()
            for _ in range(requests):
                await call(method, path, payload)
            results[label] = (time.perf_counter() - started) / requests * 1e6
    return results


def _child(mode: str, requests: int, code: Path) -> None:
    import anyio

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "MICROCORE_ENV": "production",
            "SYSTEM_TOKEN": "bench-token",
            "AUTH_SECRET": "bench-secret-bench-secret-bench-secret-0123",  # production needs one
            "DATABASE_URL": "sqlite:///bench.db",
            "LOG_FORMAT": "json",
        }
    )
    if mode == "on":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver.server_port}"
    with tempfile.TemporaryDirectory() as folder:
        root = _project(Path(folder), code)
        os.chdir(root)
        with open(os.devnull, "w") as devnull:
            stderr, sys.stderr = sys.stderr, devnull
            try:
                results = anyio.run(_measure, root, requests, code)
            finally:
                sys.stderr = stderr
    print(json.dumps(results))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout to measure as 'before'")
    parser.add_argument("--child", choices=["on", "off", "before"], help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests, args.code.resolve())
        return 0
    modes = ["off", "on"] + (["before"] if args.before else [])
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        for mode in modes[round_ % len(modes) :] + modes[: round_ % len(modes)]:
            code = args.before if mode == "before" else ROOT
            command = [sys.executable, __file__, "--child", mode, "--code", str(code)]
            out = subprocess.run(
                [*command, "--requests", str(args.requests)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
    rows = []
    for label in runs["off"][0]:
        off = statistics.median(r[label] for r in runs["off"])
        on = statistics.median(r[label] for r in runs["on"])
        row = (label, f"{off:.1f}", f"{on:.1f}", f"{on - off:+.1f}", f"{on / off:.2f}x")
        if args.before:
            before = statistics.median(r[label] for r in runs["before"])
            row += (f"{before:.1f}", f"{off / before:.2f}x")
        rows.append(row)
    print(
        table(
            f"Tracing cost, µs per request in-process (median of {args.rounds} rounds, "
            f"{args.requests} requests each)",
            ("endpoint", "off", "on (OTLP)", "delta", "on/off")
            + (("before", "off/before") if args.before else ()),
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
