"""HTTP benchmark: microcore as production runs it, against the raw ASGI floor and its peers.

The same three endpoints on each app:

* ``GET /ping``                      -> ``{"message": "pong"}``
* ``GET /items/{item_id:int}?q=pen`` -> ``{"id": 7, "q": "pen"}`` (typed path and query)
* ``POST /products``                 -> validated JSON body, one SQLite insert, 201

The apps (``--apps``, all by default):

* ``raw``: the floor, a bare ASGI callable (no framework), msgspec, one aiosqlite connection;
* ``starlette``, ``fastapi``, ``litestar``: the peers from PyPI, single files in ``bench/apps/``;
* ``microcore``: the headline, a real project (every tool of this repository) as production
  runs it: ``MICROCORE_ENV=production``, ``LOG_FORMAT=json``, ``LOG_LEVEL=INFO``, its
  access log on (one ``http_request`` line per request) and ``/system/metrics`` counting;
* ``microcore-nolog``: the same with ``HTTP_ACCESS_LOG=0`` (what the access log costs);
* ``microcore-granian``, ``raw-granian``: the headline configuration and the floor served by
  Granian instead of uvicorn.

Each app runs alone in its own process, one at a time, in the bench virtualenv
(``bench/.venv``, created on first run with the packages in ``PACKAGES``), pinned to one
core (``taskset -c 0``, wrk on the others)::

    python -m uvicorn <module>:app --loop uvloop --http httptools --workers 1 \\
        --no-access-log --log-level warning
    granian --interface asgi --loop uvloop --workers 1 --log-level warning app:app

and is loaded over loopback with the Debian ``wrk`` (``apt-get install -y wrk``)::

    wrk -t1 -c<connections> -d<seconds>s --latency [-s post_products.lua] <url>

after a warm-up run of the same command. Apps are alternated over rounds (the order
rotates every round); the table shows medians over rounds, ratios to the raw floor and to
Starlette, the server's CPU time per request (user + system of the whole process tree
over the measured run, divided by the requests wrk completed), the floor's CPU per request
over the app's (``x raw CPU``: the throughput ratio a dedicated core would give; it holds
up better than req/s when other processes share the machine) and p99 latency. A second
table shows boot time (process start to the first 200 on ``/ping``), RSS once booted
(idle) and after the load (peak), summed over the server's process tree. The servers'
own access logs are off (``--no-access-log``); microcore's access lines go to its log
file, as they would to a collector in production. SQLite: one file per run, WAL,
``synchronous=NORMAL``, autocommit inserts.

    python bench/bench_http.py                    # 3 rounds of 8 s per endpoint
    python bench/bench_http.py --rounds 2 --duration 4 --apps raw microcore microcore-nolog
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import table

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
    "granian",
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
APPS = (
    "raw",
    "raw-granian",
    "starlette",
    "microcore",
    "microcore-nolog",
    "microcore-granian",
    "fastapi",
    "litestar",
)
# Diagnostic only (never in the verdicts): microcore with POST /products inserting through
# aiosqlite directly, like the other apps, to tell the http tool's cost from the db tool's.
DIAGNOSTIC = "microcore-aiosqlite"
ENDPOINTS = {
    "GET /ping": ("/ping", None),
    "GET /items/{id}?q=": ("/items/7?q=pen", None),
    "POST /products": ("/products", '{"name": "Pen", "price": 2.5}'),
}
TARGET_VS_FLOOR = {"GET /ping": 0.75, "GET /items/{id}?q=": 0.75, "POST /products": 0.85}
TARGET_VS_LITESTAR = 1.3
TARGET_ACCESS_LOG_COST = 0.10
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def ensure_tools() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get update && apt-get install -y wrk")
    if not PYTHON.exists():
        print(f"creating the bench virtualenv in {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    missing = subprocess.run(
        [str(PYTHON), "-c", "import granian, litestar, fastapi, uvloop"], capture_output=True
    )
    if missing.returncode != 0:
        subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip", *PACKAGES],
            check=True,
        )


def versions() -> str:
    code = (
        "import importlib.metadata as m;"
        "print(', '.join(f'{p} {m.version(p)}' for p in "
        "('starlette','fastapi','litestar','uvicorn','granian','uvloop','httptools','msgspec',"
        "'structlog')))"
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


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Granian serves from worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` (every thread of each), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICK


def rss_mb(pids: list[int], field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) summed over ``pids``, in MB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(rf"{field}:\s+(\d+) kB", status)
        total += int(found.group(1)) if found else 0
    return total / 1024


def app_setup(name: str, db: Path, project: Path) -> tuple[Path, str, dict[str, str]]:
    """Where app ``name`` runs from, its ASGI target and its environment (its own SQLite file
    ``db``); microcore as production runs it, ``microcore-nolog`` without the access log."""
    env = {**os.environ, "BENCH_DB": str(db), "PYTHONPATH": str(ROOT)}
    if name.startswith("microcore"):
        env.update(
            MICROCORE_ENV="production",
            DATABASE_URL=f"sqlite:///{db}",
            LOG_FORMAT="json",
            LOG_LEVEL="INFO",
            HTTP_ACCESS_LOG="0" if name == "microcore-nolog" else "1",
        )
        return project, "app:app", env
    module = "raw_asgi" if name.startswith("raw") else name
    return APPS_DIR, f"{module}_app:app", env


class Server:
    """One app under uvicorn (or Granian), started fresh with its own SQLite file."""

    def __init__(self, name: str, workdir: Path, project: Path, *, cpus: str | None) -> None:
        """``project`` is the microcore project folder (ignored for the other apps)."""
        self.name = name
        self.port = free_port()
        app_dir, target, env = app_setup(name, workdir / f"{name}-{self.port}.db", project)
        if name.endswith("-granian"):
            self.command = [
                str(VENV / "bin" / "granian"), "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(self.port), "--loop", "uvloop", "--workers", "1",
                "--log-level", "warning", "--no-access-log", target,
            ]  # fmt: skip
        else:
            self.command = [
                str(PYTHON), "-m", "uvicorn", target, "--app-dir", str(app_dir),
                "--host", "127.0.0.1", "--port", str(self.port),
                "--loop", "uvloop", "--http", "httptools", "--workers", "1",
                "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
        if cpus is not None:
            self.command = ["taskset", "-c", cpus, *self.command]
        self.log = workdir / f"{name}-{self.port}.log"
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()
        self.boot_seconds = time.perf_counter() - started
        self.idle_rss_mb = rss_mb(tree(self.proc.pid), "VmRSS")

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
                time.sleep(0.01)  # a command-line poll, not a test: the boot time resolution
        self.stop()
        sys.exit(f"{self.name} did not answer /ping within {timeout} s:\n{self.log.read_text()}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(tree(self.proc.pid))

    def peak_rss_mb(self) -> float:
        return rss_mb(tree(self.proc.pid), "VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(
    url: str, body: str | None, *, seconds: int, connections: int, lua: Path, cpus: str | None
) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    if body is not None:
        command += ["-s", str(lua)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "requests": total,
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def cores() -> tuple[str | None, str | None]:
    """The server's core and wrk's cores, or no pinning on a single-core machine."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return str(available[0]), ",".join(str(c) for c in available[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=[*APPS, DIAGNOSTIC])
    parser.add_argument(
        "--endpoints", nargs="+", default=list(ENDPOINTS), choices=list(ENDPOINTS), metavar="EP"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and wrk")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    for reference in ("starlette", "raw"):
        if reference not in args.apps:
            args.apps.insert(0, reference)  # every ratio is against these two
    server_cpus, wrk_cpus = (None, None) if args.no_pin else cores()
    ensure_tools()
    print(f"versions: {versions()}")
    pinned = f"server on cpu {server_cpus}, wrk on {wrk_cpus}" if server_cpus else "not pinned"
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} round(s), {pinned}\n")
    results: dict[tuple[str, str], list[dict]] = {}
    boots: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        microcore = microcore_project(workdir)
        projects = {DIAGNOSTIC: microcore_project(workdir, diagnostic=True)}
        lua = workdir / "post_products.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = '{ENDPOINTS['POST /products'][1]}'\n"
        )
        for round_no in range(args.rounds):
            order = args.apps[round_no % len(args.apps) :] + args.apps[: round_no % len(args.apps)]
            for name in order:
                server = Server(name, workdir, projects.get(name, microcore), cpus=server_cpus)
                try:
                    boot = {"boot_s": server.boot_seconds, "idle_mb": server.idle_rss_mb}
                    for label in args.endpoints:
                        path, body = ENDPOINTS[label]
                        load = {"connections": args.connections, "lua": lua, "cpus": wrk_cpus}
                        run_wrk(server.url(path), body, seconds=args.warmup, **load)
                        before = server.cpu_seconds()
                        result = run_wrk(server.url(path), body, seconds=args.duration, **load)
                        used = server.cpu_seconds() - before
                        result["cpu_us"] = used / max(result["requests"], 1) * 1e6
                        results.setdefault((name, label), []).append(result)
                        print(
                            f"round {round_no + 1} {name:<19} {label:<22} "
                            f"{result['rps']:>9.0f} req/s  {result['cpu_us']:>5.0f} us CPU  "
                            f"p99 {result['p99_ms']:.2f} ms",
                            flush=True,
                        )
                    boot["peak_mb"] = server.peak_rss_mb()
                    boots.setdefault(name, []).append(boot)
                finally:
                    server.stop()
    return report(args.apps, args.endpoints, results, boots, strict=args.strict)


def report(
    apps: list[str],
    endpoints: list[str],
    results: dict[tuple[str, str], list[dict]],
    boots: dict[str, list[dict]],
    *,
    strict: bool,
) -> int:
    def median(name: str, label: str, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, label)])

    def errors(name: str, label: str) -> int:
        return sum(r["non2xx"] + r["socket_errors"] for r in results[(name, label)])

    rows = []
    verdicts: list[str] = []
    for label in endpoints:
        floor = median("raw", label, "rps")
        floor_cpu = median("raw", label, "cpu_us")
        base = median("starlette", label, "rps")
        for name in apps:
            rps = median(name, label, "rps")
            cpu = median(name, label, "cpu_us")
            rows.append(
                (
                    label,
                    name,
                    f"{rps:.0f}",
                    f"{rps / floor:.2f}",
                    f"{rps / base:.2f}",
                    f"{cpu:.0f}",
                    f"{floor_cpu / cpu:.2f}",
                    f"{median(name, label, 'p99_ms'):.2f}",
                    str(errors(name, label)),
                )
            )
        if "microcore" in apps:
            rps = median("microcore", label, "rps")
            need = TARGET_VS_FLOOR[label]
            checks = [
                (rps >= need * floor, f">= {need}x raw ASGI ({rps / floor:.2f}x)"),
                (errors("microcore", label) == 0, "no errors"),
            ]
            if "litestar" in apps:
                lite = median("litestar", label, "rps")
                what = f">= {TARGET_VS_LITESTAR}x litestar ({rps / lite:.2f}x)"
                checks.append((rps >= TARGET_VS_LITESTAR * lite, what))
            if "microcore-nolog" in apps:
                cost = 1 - rps / median("microcore-nolog", label, "rps")
                what = f"access log costs <= {TARGET_ACCESS_LOG_COST:.0%} ({cost:.1%})"
                checks.append((cost <= TARGET_ACCESS_LOG_COST, what))
            for ok, what in checks:
                verdicts.append(f"{'PASS' if ok else 'FAIL'}  {label:<22} microcore {what}")
    header = (
        "endpoint", "app", "req/s", "x raw", "x starlette", "CPU us/req", "x raw CPU", "p99 ms",
        "errors",
    )  # fmt: skip
    print()
    print(table("HTTP throughput (medians over rounds)", header, rows))
    boot_rows = [
        (
            name,
            f"{statistics.median(b['boot_s'] for b in boots[name]) * 1000:.0f}",
            f"{statistics.median(b['idle_mb'] for b in boots[name]):.1f}",
            f"{statistics.median(b['peak_mb'] for b in boots[name]):.1f}",
        )
        for name in apps
    ]
    print(
        table(
            "Boot and memory (process start to first 200 on /ping; RSS of the process tree)",
            ("app", "boot ms", "idle RSS MB", "peak RSS MB"),
            boot_rows,
        )
    )
    print("\n".join(verdicts))
    failed = any(v.startswith("FAIL") for v in verdicts)
    return 1 if failed and strict else 0


if __name__ == "__main__":
    sys.exit(main())
