"""Shared by the reload benchmarks: servers on loopback, light load, one-character edits.

Every server runs WITHOUT ``PYTHONDONTWRITEBYTECODE`` (this machine sets it globally):
``__pycache__`` is written as on a developer's laptop, so a one-character edit that
keeps the file's size, written within the second of the previous one, meets the stale
bytecode trap wherever the tool imports through the ordinary bytecode cache.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]

# The one character that changes: a version digit, 0-9 cycling, so every edit keeps the size.
MICROCORE_PLUGIN = """
import anyio

from microcore import Plugin
from tools.http import Http


class HelloPlugin(Plugin):
    def __init__(self, http: Http) -> None:
        self.http = http

    async def on_boot(self) -> None:
        self.http.add_endpoint("/hello", "GET", self.hello)
        self.http.add_sse("/stream", self.stream)

    async def hello(self, data, context):
        return {{"version": {version}}}

    async def stream(self, data, context):
        yield {{"version": {version}}}
        await anyio.sleep_forever()
"""

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def hello(request):
    return JSONResponse({{"version": {version}}})

app = Starlette(routes=[Route("/hello", hello)])
"""


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment less the bytecode switches, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    return {**env, **(extra or {})}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def microcore_project(root: Path) -> Path:
    """A small project (config, logger, http and one plugin); returns the plugin file."""
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
    return plugin


MICROCORE_ENV = {
    "MICROCORE_RELOAD": "1",
    "MICROCORE_ENV": "development",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "WARNING",
    "HTTP_ACCESS_LOG": "0",
}


class Server:
    """One server process on loopback; its output goes to a log file beside the project."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = cwd.parent / f"server-{port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, path: str = "/hello", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.tail()}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling interval while the server boots
        raise RuntimeError(f"server did not answer {path} within {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def children(self) -> set[int]:
        """Direct child processes (the workers of a multiprocess supervisor)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return {int(p) for p in path.read_text().split()}
        except OSError:
            return set()

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else float("nan")

    def stop(self, timeout: float = 15.0) -> float | None:
        """SIGTERM, then wait; the seconds it took to exit, or None when it had to be killed."""
        if self.proc.poll() is not None:
            return 0.0
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        return time.perf_counter() - start


class Load:
    """Light continuous load: one client, one GET every ``1/rate`` s; counts failures.

    A failure is a transport error (refused, reset, timeout) or a non-200 answer.
    """

    def __init__(self, url: str, rate: float) -> None:
        self.url = url
        self.interval = 1.0 / rate
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok:
                    self.ok += 1
                else:
                    self.failed += 1
                next_at = max(next_at + self.interval, time.monotonic())
                self._stop.wait(max(0.0, next_at - time.monotonic()))  # the load's pace


def edit(target: Path, template: str, version: int) -> None:
    """Rewrite ``target`` with one digit changed: same size as every other version."""
    target.write_text(template.format(version=version % 10))


def wait_version(
    client: httpx.Client, url: str, version: int, timeout: float, *, poll: float = 0.001
) -> bool:
    """Poll ``url`` until its JSON says ``version`` (mod 10); False when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get(url).json().get("version") == version % 10:
                return True
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(poll)  # polling interval (keeps a refused connect from spinning a core)
    return False


def served_version(client: httpx.Client, url: str) -> int | None:
    """The version ``url`` answers now, or None when it does not answer with one."""
    try:
        version = client.get(url).json().get("version")
    except (httpx.TransportError, ValueError):
        return None
    return version if isinstance(version, int) else None


def reload_loop(
    server: Server,
    target: Path,
    template: str,
    edits: int,
    *,
    timeout: float,
    pause: float,
    trigger: Callable[[], None] | None = None,
    settle: Callable[[], None] | None = None,
    after: Callable[[int], None] | None = None,
) -> tuple[list[float], list[str]]:
    """Make ``edits`` one-character edits. Returns the ms from each write to its first new
    response, and for each version never served within ``timeout`` s what was served
    instead: ``"stale"`` (the previous version) or ``"no answer"``."""
    latencies: list[float] = []
    missed: list[str] = []
    url = server.url + "/hello"
    with httpx.Client(timeout=2) as client:
        for n in range(1, edits + 1):
            time.sleep(pause)  # benchmark pacing between edits, not synchronisation
            start = time.perf_counter()
            edit(target, template, n)
            if trigger is not None:
                trigger()
            if wait_version(client, url, n, timeout):
                latencies.append((time.perf_counter() - start) * 1000)
            else:
                now = served_version(client, url)
                missed.append("no answer" if now is None else "stale")
            if settle is not None:
                settle()
            if after is not None:
                after(n)
    return latencies, missed


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    if q == 0.5:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
