"""HTTP benchmark: microcore against raw Starlette, FastAPI and Litestar.

The same three endpoints on each framework:

* ``GET /ping``                      -> ``{"message": "pong"}``
* ``GET /items/{item_id:int}?q=pen`` -> ``{"id": 7, "q": "pen"}`` (typed path and query)
* ``POST /products``                 -> validated JSON body, one SQLite insert, 201

Each app runs alone in its own process, one at a time, in the bench virtualenv
(``bench/.venv``, created on first run with the packages in ``PACKAGES``)::

    bench/.venv/bin/python -m uvicorn <module>:app --host 127.0.0.1 --port <port> \\
        --loop uvloop --http httptools --workers 1 --no-access-log --log-level warning

and is loaded over loopback with the Debian ``wrk`` (``apt-get install -y wrk``)::

    wrk -t1 -c<connections> -d<seconds>s --latency [-s post_products.lua] <url>

after a warm-up run of the same command. Apps are alternated over rounds (the
order rotates every round); the table shows medians over rounds, ratios to raw
Starlette, p99 latency and peak RSS (``VmHWM`` of the server process).
microcore serves its endpoints through plugins in a real project (every tool
of this repository, ``MICROCORE_ENV=production``), the others are single files
in ``bench/apps/``. No app writes an access log: uvicorn runs with ``--no-access-log``
and microcore with ``HTTP_ACCESS_LOG=0`` (its own per-request line), so every app
does the same work per request; microcore still counts requests for
``/system/metrics`` (the system tool's observer), as it does in production.
SQLite: one file per run, WAL, ``synchronous=NORMAL``, autocommit inserts.

    python bench/bench_http.py                    # 5 rounds of 8 s per endpoint
    python bench/bench_http.py --rounds 1 --duration 5 --apps microcore starlette
    python bench/bench_http.py --apps starlette microcore microcore-aiosqlite litestar
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
APPS_DIR = BENCH / "apps"
VENV = BENCH / ".venv"
PYTHON = VENV / "bin" / "python"
PACKAGES = [
    "starlette",
    "fastapi",
    "litestar",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiosqlite",
    "msgspec",
    "structlog",
    "anyio",
    "watchfiles",
    "pydantic",
    "cronsim",  # the scheduler tool, copied into the microcore project with the other tools
    "python-multipart",  # the http tool's form parser
    "swagger-ui-bundle-v2",
]
APPS = ("starlette", "microcore", "fastapi", "litestar")
# Diagnostic only (never in the verdicts): microcore with POST /products inserting through
# aiosqlite directly, like the other apps, to tell the http tool's cost from the db tool's.
DIAGNOSTIC = "microcore-aiosqlite"
ENDPOINTS = {
    "GET /ping": ("/ping", None),
    "GET /items/{id}?q=": ("/items/7?q=pen", None),
    "POST /products": ("/products", '{"name": "Pen", "price": 2.5}'),
}
TARGET_VS_STARLETTE = 0.9
TARGET_VS_LITESTAR = 1.25
TARGET_P99 = 1.2


def ensure_tools() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get update && apt-get install -y wrk")
    if not PYTHON.exists():
        print(f"creating the bench virtualenv in {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip", *PACKAGES],
            check=True,
        )


def versions() -> str:
    code = (
        "import importlib.metadata as m;"
        "print(', '.join(f'{p} {m.version(p)}' for p in "
        "('starlette','fastapi','litestar','uvicorn','uvloop','httptools','msgspec')))"
    )
    return subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True).stdout.strip()


def microcore_project(workdir: Path, *, diagnostic: bool = False) -> Path:
    """A throwaway project: this repository's tools and the bench domain, plus app.py."""
    project = workdir / ("microcore_diagnostic" if diagnostic else "microcore_project")
    ignore = shutil.ignore_patterns("__pycache__", "*.db", "*.db-*")
    shutil.copytree(ROOT / "tools", project / "tools", ignore=ignore)
    shutil.copytree(APPS_DIR / "microcore_app" / "domains", project / "domains", ignore=ignore)
    (project / "app.py").write_text("from microcore import create_app\n\napp = create_app()\n")
    if diagnostic:
        plugin = "create_product_plugin.py"
        shutil.copy(APPS_DIR / "microcore_aiosqlite" / plugin, project / "domains/bench/plugins")
    return project


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One app under uvicorn, started fresh with its own SQLite file."""

    def __init__(self, name: str, workdir: Path, project: Path) -> None:
        """``project`` is the microcore project folder (ignored for the other apps)."""
        self.name = name
        self.port = free_port()
        db = workdir / f"{name}-{self.port}.db"
        env = {**os.environ, "BENCH_DB": str(db), "PYTHONPATH": str(ROOT)}
        if name.startswith("microcore"):
            app_dir, target = project, "app:app"
            env.update(
                MICROCORE_ENV="production",
                DATABASE_URL=f"sqlite:///{db}",
                LOG_FORMAT="json",
                LOG_LEVEL="WARNING",
                HTTP_ACCESS_LOG="0",  # parity with --no-access-log for the other apps
            )
        else:
            app_dir, target = APPS_DIR, f"{name}_app:app"
        self.command = [
            str(PYTHON), "-m", "uvicorn", target, "--app-dir", str(app_dir),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--loop", "uvloop", "--http", "httptools", "--workers", "1",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        self.log = workdir / f"{name}-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} exited at start:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url("/ping"), timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        sys.exit(f"{self.name} did not answer /ping within {timeout} s:\n{self.log.read_text()}")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url: str, body: str | None, *, seconds: int, connections: int, lua: Path) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if body is not None:
        command += ["-s", str(lua)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=[*APPS, DIAGNOSTIC])
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if "starlette" not in args.apps:
        args.apps.insert(0, "starlette")  # the reference every ratio is against
    ensure_tools()
    print(f"versions: {versions()}")
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} round(s)\n")
    results: dict[tuple[str, str], list[dict]] = {}
    rss: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        projects = {
            "microcore": microcore_project(workdir),
            DIAGNOSTIC: microcore_project(workdir, diagnostic=True),
        }
        lua = workdir / "post_products.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = '{ENDPOINTS['POST /products'][1]}'\n"
        )
        for round_no in range(args.rounds):
            order = args.apps[round_no % len(args.apps) :] + args.apps[: round_no % len(args.apps)]
            for name in order:
                server = Server(name, workdir, projects.get(name, workdir))
                try:
                    for label, (path, body) in ENDPOINTS.items():
                        run_wrk(
                            server.url(path), body, seconds=args.warmup,
                            connections=args.connections, lua=lua,
                        )  # fmt: skip
                        result = run_wrk(
                            server.url(path), body, seconds=args.duration,
                            connections=args.connections, lua=lua,
                        )  # fmt: skip
                        results.setdefault((name, label), []).append(result)
                        print(
                            f"round {round_no + 1} {name:<19} {label:<22} "
                            f"{result['rps']:>9.0f} req/s  p99 {result['p99_ms']:.2f} ms",
                            flush=True,
                        )
                    rss.setdefault(name, []).append(server.peak_rss_mb())
                finally:
                    server.stop()
    return report(args.apps, results, rss, strict=args.strict)


def report(
    apps: list[str],
    results: dict[tuple[str, str], list[dict]],
    rss: dict[str, list[float]],
    *,
    strict: bool,
) -> int:
    def median(name: str, label: str, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, label)])

    def errors(name: str, label: str) -> int:
        return sum(r["non2xx"] + r["socket_errors"] for r in results[(name, label)])

    print()
    header = (
        f"{'endpoint':<22} {'app':<19} {'req/s':>9} {'x starlette':>11} "
        f"{'p99 ms':>8} {'x p99':>6} {'peak RSS MB':>11} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    verdicts: list[str] = []
    for label in ENDPOINTS:
        base_rps = median("starlette", label, "rps")
        base_p99 = median("starlette", label, "p99_ms")
        for name in apps:
            rps, p99 = median(name, label, "rps"), median(name, label, "p99_ms")
            print(
                f"{label:<22} {name:<19} {rps:>9.0f} {rps / base_rps:>11.2f} "
                f"{p99:>8.2f} {p99 / base_p99:>6.2f} {statistics.median(rss[name]):>11.1f} "
                f"{errors(name, label):>6}"
            )
        if "microcore" in apps:
            rps = median("microcore", label, "rps")
            p99 = median("microcore", label, "p99_ms")
            checks = [
                (rps >= TARGET_VS_STARLETTE * base_rps, f">= {TARGET_VS_STARLETTE}x starlette"),
                (p99 <= TARGET_P99 * base_p99, f"p99 <= {TARGET_P99}x starlette"),
                (errors("microcore", label) == 0, "no errors"),
            ]
            if "litestar" in apps:
                lite = median("litestar", label, "rps")
                target = f">= {TARGET_VS_LITESTAR}x litestar"
                checks.append((rps >= TARGET_VS_LITESTAR * lite, target))
            for ok, what in checks:
                verdicts.append(f"{'PASS' if ok else 'FAIL'}  {label:<22} microcore {what}")
        print()
    print("\n".join(verdicts))
    failed = any(v.startswith("FAIL") for v in verdicts)
    return 1 if failed and strict else 0


if __name__ == "__main__":
    sys.exit(main())
