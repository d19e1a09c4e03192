"""Reload soak: many one-character reloads of one plugin under light load, then open streams.

Run through ``bench/bench_reload.py --soak 1000``. Two parts, each on a fresh copy of a
small project (config, logger, http and one plugin) served by
``MICROCORE_RELOAD=1 uvicorn app:app`` on loopback, without ``PYTHONDONTWRITEBYTECODE``:

1. ``RELOADS`` edits of the plugin (a version digit cycling 0-9: same size, several
   edits per mtime second) under light continuous load: failed requests, versions never
   served, write -> first new response p50/p95, and the server's RSS (``VmRSS``) after
   reload 10, 100 and ``RELOADS``; the growth from reload 100 to the last one.
2. 20 server-sent-event clients hold ``GET /stream`` (the plugin's ``add_sse`` route)
   open across each of ``--sse-reloads`` reloads: the reload latency while they are
   open, how many streams the server closed and how soon after the write, and whether
   clients that connect again reach the new code. Last, SIGTERM with 20 streams open:
   how long the server takes to exit.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _reload_kit import (  # bench/ is the script's folder
    MICROCORE_ENV,
    MICROCORE_PLUGIN,
    Load,
    Server,
    edit,
    free_port,
    microcore_project,
    quantile,
    reload_loop,
    server_env,
    wait_version,
)
from _report import table

SSE_CLIENTS = 20
CLOSE_WINDOW = 5.0  # s after the write within which an old stream must have been closed
TARGET_P50_MS, TARGET_P95_MS, TARGET_GROWTH_MIB, TARGET_SSE_S = 20.0, 50.0, 5.0, 1.0


def start_server(root: Path) -> tuple[Server, Path]:
    plugin = microcore_project(root)
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    env = server_env({**MICROCORE_ENV, "LOG_LEVEL": "INFO"})  # INFO: its "reloaded" lines
    server = Server(command, root, env, port)
    server.wait_ready()
    return server, plugin


def soak(reloads: int, *, rate: float, pause: float, sse_reloads: int) -> int:
    checkpoints = sorted({n for n in (10, 100, reloads) if n <= reloads})
    rss: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        server, plugin = start_server(root)
        try:
            rss[0] = server.rss_mib()

            def after(n: int) -> None:
                if n in checkpoints:
                    rss[n] = server.rss_mib()
                if n % 100 == 0:
                    print(f"  {n} reloads, RSS {server.rss_mib():.1f} MiB", flush=True)

            started = time.monotonic()
            with Load(server.url + "/hello", rate) as load:
                latencies, missed = reload_loop(
                    server, plugin, MICROCORE_PLUGIN, reloads,
                    timeout=5.0, pause=pause, after=after,
                )  # fmt: skip
            wall = time.monotonic() - started
        finally:
            server.stop()
        applied = applied_ms(server)
    print()
    print(soak_report(reloads, latencies, missed, load, rss, wall, rate, applied))
    if sse_reloads:
        print(sse_soak(sse_reloads))
    return 0


def soak_report(
    reloads: int,
    latencies: list[float],
    missed: list[str],
    load: Load,
    rss: dict[int, float],
    wall: float,
    rate: float,
    applied: list[float],
) -> str:
    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    p50, p95 = quantile(latencies, 0.5), quantile(latencies, 0.95)
    rows: list[tuple[str, ...]] = [
        ("reloads served", f"{reloads - len(missed)}/{reloads}", "all", verdict(not missed)),
        ("requests under load", str(load.ok + load.failed), "", ""),
        ("failed requests", str(load.failed), "0", verdict(load.failed == 0)),
        ("reload p50 ms", f"{p50:.1f}", f"<= {TARGET_P50_MS:g}", verdict(p50 <= TARGET_P50_MS)),
        ("reload p95 ms", f"{p95:.1f}", f"<= {TARGET_P95_MS:g}", verdict(p95 <= TARGET_P95_MS)),
        ("reload max ms", f"{max(latencies, default=float('nan')):.1f}", "", ""),
        ("  of which applying, p50 ms", f"{quantile(applied, 0.5):.1f}", "", ""),
        ("  of which applying, p95 ms", f"{quantile(applied, 0.95):.1f}", "", ""),
    ]
    rows += [(f"RSS MiB after reload {n}", f"{mib:.1f}", "", "") for n, mib in sorted(rss.items())]
    if 100 in rss and reloads > 100:
        growth = rss[reloads] - rss[100]
        rows.append((
            f"RSS growth 100 -> {reloads} MiB", f"{growth:+.1f}",
            f"< {TARGET_GROWTH_MIB:g}", verdict(growth < TARGET_GROWTH_MIB),
        ))  # fmt: skip
    title = (
        f"reload soak: {reloads} one-character reloads of one plugin, "
        f"light load {rate:g} GET/s, {wall:.0f} s"
    )
    return table(title, ("measure", "value", "target", "verdict"), rows)


def applied_ms(server: Server) -> list[float]:
    """The server's own figure for each reload (classify, stage, commit: its "reloaded" log
    lines); the rest of write -> new response is the file watcher noticing the change."""
    found = []
    for line in server.log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "reloaded" and "ms" in entry:
            found.append(float(entry["ms"]))
    return found


class SseClient(threading.Thread):
    """One ``GET /stream`` held open on a raw socket: the version of its first event and
    when the server ended the stream (EOF or the last chunk), or that it never did."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.version: int | None = None
        self.opened = threading.Event()
        self.closed_at: float | None = None
        self.error: str | None = None
        self._quit = threading.Event()

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(
                    b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Accept: text/event-stream\r\nConnection: close\r\n\r\n"
                )
                sock.settimeout(0.05)  # how often the client looks at its stop flag
                self._read(sock)
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.opened.set()

    def _read(self, sock: socket.socket) -> None:
        buffer = b""
        while not self._quit.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk or (self.version is not None and b"\r\n0\r\n\r\n" in buffer + chunk):
                self.closed_at = time.perf_counter()
                return
            buffer += chunk
            if self.version is None and b"data: " in buffer and b"\n\n" in buffer:
                line = buffer.split(b"data: ", 1)[1].split(b"\n", 1)[0]
                self.version = int(json.loads(line)["version"])
                self.opened.set()

    def stop(self) -> None:
        self._quit.set()
        self.join(timeout=5)


def open_clients(port: int) -> list[SseClient]:
    clients = [SseClient(port) for _ in range(SSE_CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.opened.wait(timeout=10)
    return clients


def sse_soak(reloads: int) -> str:
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        server, plugin = start_server(root)
        try:
            clients = open_clients(server.port)
            with httpx.Client(timeout=2) as http:
                for n in range(1, reloads + 1):
                    held = sum(c.version == (n - 1) % 10 and c.closed_at is None for c in clients)
                    start = time.perf_counter()
                    edit(plugin, MICROCORE_PLUGIN, n)
                    served = wait_version(http, server.url + "/hello", n, 5.0)
                    reload_ms = (time.perf_counter() - start) * 1000
                    deadline = start + CLOSE_WINDOW
                    while time.perf_counter() < deadline and any(
                        c.closed_at is None for c in clients
                    ):
                        time.sleep(0.01)  # polling interval while the streams close
                    closed = [c.closed_at - start for c in clients if c.closed_at is not None]
                    for client in clients:
                        client.stop()
                    clients = open_clients(server.port)  # the reconnect
                    fresh = sum(c.version == n % 10 for c in clients)
                    rows.append((
                        str(n), str(held), f"{reload_ms:.1f}" if served else "never served",
                        f"{len(closed)}/{len(clients)}",
                        f"{max(closed) * 1000:.0f}" if closed else "-",
                        f"{fresh}/{len(clients)}",
                    ))  # fmt: skip
            shutdown = server.stop(timeout=15)
        finally:
            server.stop()
            for client in clients:
                client.stop()
    if shutdown is None:
        notes.append(f"SIGTERM with {SSE_CLIENTS} streams open: not exited after 15 s (killed)")
    else:
        notes.append(f"SIGTERM with {SSE_CLIENTS} streams open: exited in {shutdown:.2f} s")
    title = (
        f"reloads with {SSE_CLIENTS} SSE clients open (target: reload < {TARGET_SSE_S:g} s, "
        f"every stream closed within 1 s of the swap, reconnects reach the new code)"
    )
    header = ("reload", "streams held", "reload ms", f"closed <{CLOSE_WINDOW:g}s",
              "last close ms", "reconnect new")  # fmt: skip
    return table(title, header, rows) + "\n".join(notes) + "\n"
