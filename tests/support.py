"""Helpers for tests that run the real server in a subprocess."""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from unittest.mock import AsyncMock, MagicMock

import anyio
import anyio.abc
import httpx

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
def serve(root: Path, env: Mapping[str, str], *, app: str = "app:app") -> Iterator[str]:
    """Run ``uvicorn app:app`` in ``root`` on a free port; yields the base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env={**os.environ, "LOG_FORMAT": "json", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
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

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
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


def mock_db() -> tuple[AsyncMock, AsyncMock]:
    """A mock ``db`` and the mock ``tx`` its ``async with db.transaction() as tx`` yields
    (for plugins that write in a transaction, e.g. with ``publish(..., transaction=tx)``)."""
    db, tx = AsyncMock(), AsyncMock()
    tx.__aenter__.return_value = tx
    tx.__aexit__.return_value = None
    db.transaction = MagicMock(return_value=tx)
    return db, tx
