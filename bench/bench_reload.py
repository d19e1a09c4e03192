"""Hot reload latency: microcore in-process reload vs `uvicorn --reload`, same edits, same run.

For each server, 30 edits are made to the file that holds the handler; after each
write the script polls until a response shows the new version and records the
latency from the write to that first new response. A second client sends requests
continuously during all edits and counts the failed ones (transport errors and
non-200 answers). Both servers run on loopback; nothing else is contacted.

Run: .venv/bin/python bench/bench_reload.py [--edits 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]

MICROCORE_PLUGIN = """
from microcore import Plugin

class HelloPlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/hello", "GET", self.hello)

    async def hello(self, data, context):
        return {{"version": {version}}}
"""

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def hello(request):
    return JSONResponse({{"version": {version}}})

app = Starlette(routes=[Route("/hello", hello)])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_microcore_project(root: Path) -> tuple[Path, list[str], dict[str, str]]:
    for tool in ("config", "logger", "http"):
        shutil.copytree(
            REPO / "tools" / tool,
            root / "tools" / tool,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    (root / "app.py").write_text("from microcore import create_app\n\napp = create_app()\n")
    plugin = root / "domains/demo/plugins/hello_plugin.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(MICROCORE_PLUGIN.format(version=0))
    env = {"MICROCORE_RELOAD": "1", "MICROCORE_ENV": "development", "LOG_FORMAT": "json"}
    return plugin, ["app:app"], env


def make_starlette_project(root: Path) -> tuple[Path, list[str], dict[str, str]]:
    app = root / "app.py"
    app.write_text(STARLETTE_APP.format(version=0))
    return app, ["app:app", "--reload"], {}


def run(name: str, make, edits: int, template: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        target, args, env = make(root)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}/hello"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(base, timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            stop = threading.Event()
            counts = {"ok": 0, "failed": 0}

            def hammer() -> None:
                with httpx.Client(timeout=5) as client:
                    while not stop.is_set():
                        try:
                            ok = client.get(base).status_code == 200
                        except httpx.TransportError:
                            ok = False
                        counts["ok" if ok else "failed"] += 1
                        if not ok:
                            time.sleep(0.001)

            thread = threading.Thread(target=hammer, daemon=True)
            thread.start()
            latencies: list[float] = []
            with httpx.Client(timeout=5) as client:
                for version in range(1, edits + 1):
                    time.sleep(0.05)  # let the previous reload settle (benchmark pacing, not sync)
                    start = time.perf_counter()
                    target.write_text(template.format(version=version))
                    deadline = time.monotonic() + 30
                    while True:
                        try:
                            if client.get(base).json().get("version") == version:
                                break
                        except (httpx.TransportError, ValueError):
                            pass
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{name}: version {version} never served")
                    latencies.append((time.perf_counter() - start) * 1000)
            stop.set()
            thread.join(timeout=10)
        finally:
            server.terminate()
            server.wait(timeout=15)
    latencies.sort()
    return {
        "name": name,
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, int(len(latencies) * 0.95) - 1)],
        "max": latencies[-1],
        "requests": counts["ok"] + counts["failed"],
        "failed": counts["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edits", type=int, default=30)
    args = parser.parse_args()
    rows = [
        run("microcore (in-process)", make_microcore_project, args.edits, MICROCORE_PLUGIN),
        run("uvicorn --reload", make_starlette_project, args.edits, STARLETTE_APP),
    ]
    base = rows[1]
    print(f"\nwrite -> first new response, {args.edits} edits each\n")
    print(
        f"{'server':<24}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'requests':>10}{'failed':>8}"
        f"{'p50 speed-up':>14}"
    )
    for row in rows:
        speedup = base["p50"] / row["p50"]  # type: ignore[operator]
        print(
            f"{row['name']:<24}{row['p50']:>9.1f}{row['p95']:>9.1f}{row['max']:>9.1f}"
            f"{row['requests']:>10}{row['failed']:>8}{speedup:>13.1f}x"
        )


if __name__ == "__main__":
    main()
