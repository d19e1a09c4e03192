"""Instructions per request, served: each app under uvicorn in callgrind, fed by wrk.

Wall-clock numbers on a shared machine move by ±30 % between rounds; instruction counts
do not (two runs agree within 1-2 %). Each app of ``bench_http.py`` (``raw``,
``microcore``, ``microcore-nolog``; the same projects and settings) is started under
``valgrind --tool=callgrind`` with uvicorn (uvloop, httptools), pinned to one core; per
endpoint, wrk warms it up, the counters are zeroed (``callgrind_control -z``), wrk loads
it for ``--seconds`` (``-t1 -c8``) and the counters are dumped: the instructions the
whole process ran (every thread, user space only: the kernel's socket work is not
counted), divided by the requests wrk completed. Under callgrind an app serves a few
hundred requests a second, so work the app does per second rather than per request
(timers, the log writer's wake-ups) weighs a few thousand instructions more per request
than it does at full speed. ``valgrind`` must be installed
(``apt-get install -y valgrind``)::

    python bench/count_http.py                         # raw, microcore, microcore-nolog
    python bench/count_http.py --apps microcore microcore-nolog --endpoints "GET /ping"
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import table
from bench_http import (
    ENDPOINTS,
    PYTHON,
    app_setup,
    cores,
    ensure_tools,
    free_port,
    microcore_project,
)

APPS = ("raw", "microcore", "microcore-nolog")


class CountedServer:
    """One app under uvicorn inside callgrind (boots in a minute or two)."""

    def __init__(self, name: str, workdir: Path, project: Path, cpu: str | None) -> None:
        self.name = name
        self.port = free_port()
        self.out = workdir / f"{name}.callgrind"
        app_dir, target, env = app_setup(name, workdir / f"{name}-{self.port}.db", project)
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}",
            str(PYTHON), "-m", "uvicorn", target, "--app-dir", str(app_dir),
            "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop",
            "--http", "httptools", "--workers", "1", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        if cpu is not None:
            command = ["taskset", "-c", cpu, *command]
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{name} exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url("/ping"), timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(1)  # a command-line poll: callgrind boots in minutes
        self.stop()
        sys.exit(f"{name} did not answer /ping under callgrind within 300 s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str, lua: Path | None, seconds: int, cpus: str | None) -> float:
        """Instructions per request over ``seconds`` of load on ``path``."""
        wrk = ["wrk", "-t1", "-c8", *(["-s", str(lua)] if lua else [])]
        if cpus is not None:
            wrk = ["taskset", "-c", cpus, *wrk]
        subprocess.run([*wrk, "-d3s", self.url(path)], capture_output=True, check=True)
        pid = str(self.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
        out = subprocess.run(
            [*wrk, f"-d{seconds}s", self.url(path)], capture_output=True, text=True, check=True
        ).stdout
        before = set(self.out.parent.glob(f"{self.out.name}.*"))
        subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=True)
        (dump,) = set(self.out.parent.glob(f"{self.out.name}.*")) - before
        totals = re.search(r"^totals:\s+(\d+)", dump.read_text(), re.M)
        requests = re.search(r"(\d+) requests in", out)
        assert totals is not None and requests is not None
        return int(totals.group(1)) / int(requests.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", nargs="+", choices=APPS, default=list(APPS))
    parser.add_argument("--endpoints", nargs="+", choices=list(ENDPOINTS), metavar="EP",
                        default=list(ENDPOINTS))  # fmt: skip
    parser.add_argument("--seconds", type=int, default=10, help="seconds of counted load")
    args = parser.parse_args()
    ensure_tools()
    server_cpu, wrk_cpus = cores()
    counts: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="count-http-") as tmp:
        workdir = Path(tmp)
        project = microcore_project(workdir)
        lua = workdir / "post_products.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = '{ENDPOINTS['POST /products'][1]}'\n"
        )
        for name in args.apps:
            print(f"starting {name} under callgrind ...", flush=True)
            server = CountedServer(name, workdir, project, server_cpu)
            try:
                for endpoint in args.endpoints:
                    path, body = ENDPOINTS[endpoint]
                    counted = server.count(path, lua if body else None, args.seconds, wrk_cpus)
                    counts[name, endpoint] = counted
                    print(f"{name:16s} {endpoint:20s} {counted:9,.0f} instructions/request")
            finally:
                server.stop()
    rows = []
    for endpoint in args.endpoints:
        for name in args.apps:
            counted = counts[name, endpoint]
            floor = counts.get(("raw", endpoint))
            rows.append((
                endpoint, name, f"{counted:,.0f}", f"{floor / counted:.2f}" if floor else "-",
            ))  # fmt: skip
    print()
    print(table("Instructions per request, served (callgrind)",
                ("endpoint", "app", "instructions", "x raw"), rows))  # fmt: skip
    for endpoint in args.endpoints:
        on, off = counts.get(("microcore", endpoint)), counts.get(("microcore-nolog", endpoint))
        if on and off:
            print(f"{endpoint}: the access log costs {(on - off):,.0f} instructions a request, "
                  f"{(on - off) / off:.1%} of the request without it")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
