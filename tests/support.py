"""Helpers for tests that run the real server in a subprocess."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.abc
import httpx
import pytest

if TYPE_CHECKING:
    from microcore import Event
    from microcore.testing import Kernel, RunningApp
    from tools.event_bus.event_bus_tool import EventBusTool

T = TypeVar("T")


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll_url(
    url: str,
    check: Callable[[httpx.Response], object] = lambda response: True,
    *,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
) -> httpx.Response:
    """GET ``url`` until ``check(response)`` holds (a server that is down or restarting, or
    a body that is not the JSON expected yet, counts as not yet); TimeoutError after
    ``timeout`` seconds, RuntimeError at once if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            response = httpx.get(url, timeout=2.0)
            if check(response):
                return response
        except (httpx.TransportError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not satisfy the check within {timeout} s")
        time.sleep(0.02)  # polling interval of a bounded wait, not synchronisation


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes], *, timeout: float = 30.0
) -> None:
    """Poll ``url`` until it answers, the process dies, or the deadline passes."""
    poll_url(url, timeout=timeout, process=process)


@contextmanager
def serve(
    root: Path, env: Mapping[str, str], *, app: str = "app:app", log: Path | None = None
) -> Iterator[str]:
    """Run ``uvicorn app:app`` in ``root`` on a free port; yields the base URL. ``log``: a
    file for the server's log (a test that makes it log a lot must not fill a pipe)."""
    port = free_port()
    with contextlib.ExitStack() as files:
        stderr = subprocess.PIPE if log is None else files.enter_context(log.open("wb"))
        with _served(root, env, app, port, stderr) as base:
            yield base


@contextmanager
def _served(root: Path, env: Mapping[str, str], app: str, port: int, stderr: Any) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env={**os.environ, "LOG_FORMAT": "json", **env},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/system/health", process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server is a bug, kill it
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


async def eventually(
    check: Callable[[], Awaitable[object] | object],
    *,
    timeout: float = 5.0,
    interval: float = 0.002,
) -> None:
    """Wait until ``check()`` (sync or async) is truthy; TimeoutError after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(interval)  # the polling interval of a bounded wait


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port`` now."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, *, open_: bool = True, timeout: float = 15.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts (or, ``open_=False``, refuses) connections."""
    deadline = time.monotonic() + timeout
    while port_open(port) != open_:
        if time.monotonic() > deadline:
            state = "open" if open_ else "closed"
            raise TimeoutError(f"port {port} was not {state} within {timeout} s")
        time.sleep(0.02)  # polling interval of a bounded wait, not synchronisation


class PrivateRedis:
    """A redis-server of the test's own on a free port, to stop and start at will (the
    machine's shared Redis is never touched)."""

    def __init__(self, *, store: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.store = store  # a folder: keep the data across restarts (append-only file)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = ["--save", "", "--appendonly", "no"]
        if self.store is not None:
            persistence = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
            persistence += ["--dir", str(self.store)]
        self._process = subprocess.Popen(
            [*("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"), *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        wait_for_port(self.port, open_=False)


class FakeKernel:
    """A ``KernelView`` with settings and no plugins, for a tool built without a kernel; its
    background tasks run in ``tg`` (the test's task group) when one is given."""

    def __init__(self, settings: dict[str, str], tg: anyio.abc.TaskGroup | None = None) -> None:
        self._tg = tg
        self.settings = settings
        self.root = Path.cwd()
        self.plugins: dict[str, Any] = {}
        self.tools: dict[str, Any] = {}
        self.reloaded_at: float | None = None
        self.reload_ms: float | None = None

    def status(self) -> Any:
        return {}

    def failures(self) -> dict[str, list[str]]:
        return {}

    def start_background(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None
    ) -> None:
        assert self._tg is not None, "this fake kernel runs no background tasks"
        self._tg.start_soon(fn, *args, name=name)

    def add_reload_listener(self, listener: Callable[[], Awaitable[None] | None]) -> None:
        return None


def present(value: T | None) -> T:
    """``value``, which the test expects to be there (a failed assertion when it is None)."""
    assert value is not None
    return value


class PrivatePostgres:
    """A PostgreSQL server of the test's own (``initdb`` in a temp dir, ``pg_ctl`` on a free
    port), to stop and start at will: the machine's shared PostgreSQL is never touched.

    PostgreSQL refuses to run as root: as root the cluster is made and run as the
    ``postgres`` user (``runuser``). :func:`postgres_unavailable` says why it cannot run.
    """

    def __init__(self) -> None:
        self.bin = _postgres_bin() or Path("/nonexistent")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="microcore-pg-"))
        self.data = self.dir / "data"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def init(self) -> None:
        """Make the cluster (trust auth for ``postgres`` on loopback)."""
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown that ends every session; ``immediate``: a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        wait_for_port(self.port, open_=False)

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin``, or the folder of ``pg_ctl`` on PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found and (found[-1] / "initdb").exists():
        return found[-1]
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def postgres_unavailable() -> str | None:
    """Why :class:`PrivatePostgres` cannot run here, or ``None``."""
    if _postgres_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser (PostgreSQL refuses to run as root)"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return None


# -- the browser tests' Chromium ---------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser() -> None:
    """Skip when Chromium or Playwright is missing; fail instead under ``CI=true``."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Debian's Chromium ({CHROMIUM}: apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append(
            "the playwright package (pip install 'playwright>=1.40'; no browser download)"
        )
    if not missing:
        return
    message = "the dashboard browser test needs " + " and ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true runs every test: .ci/run installs them")
    pytest.skip(message)


# -- the shared NATS server ---------------------------------------------------------------

NATS_URL = os.environ.get("MICROCORE_TEST_NATS", "nats://127.0.0.1:4222")


async def delete_stream(name: str) -> None:
    """Remove a test's JetStream stream (and its consumers) from the shared NATS server."""
    import nats
    import nats.js.errors

    client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await client.jsm().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await client.close()


# -- a booted app, as the tool tests look at it --------------------------------------------


class BootedApp:
    """A project booted for one test, an HTTP client over it, and its event bus."""

    def __init__(self, running: RunningApp, client: httpx.AsyncClient) -> None:
        self.running = running
        self.client = client

    @property
    def kernel(self) -> Kernel:
        return self.running.kernel

    @property
    def root(self) -> Path:
        return self.kernel.root

    @property
    def bus(self) -> EventBusTool:
        return cast("EventBusTool", self.kernel.tool("event_bus"))

    async def published(self, name: str, *, timeout: float = 5.0) -> Event:
        """The first event named ``name`` in the bus history, waiting up to ``timeout``."""

        def find() -> Event | None:
            return next((e for e in self.bus.history() if e.name == name), None)

        await eventually(find, timeout=timeout)
        found = find()
        assert found is not None
        return found


@asynccontextmanager
async def serving(
    spawned: tuple[str, subprocess.Popen[bytes]],
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A server process just spawned (its base URL, the process), once ``/system/health``
    answers; killed at the end if the test left it running."""
    base, process = spawned
    try:
        await anyio.to_thread.run_sync(wait_until_serving, f"{base}/system/health", process)
        yield base, process
    finally:
        if process.poll() is None:  # pragma: no cover - only when a test failed midway
            process.kill()
        await anyio.to_thread.run_sync(process.wait, 10)
