"""Benchmark: the scheduler once per cluster, with real replicas on Redis, and its timing.

    python bench/bench_scheduler.py [--seconds 60] [--lease 10] [--connections 32]

Every replica is ``uvicorn app:app`` of a copy of this repository (its tools and the
example domain) plus one plugin whose job appends ``start``/``end`` lines (pid, time) to
a file all replicas share; the tables are read from that file. Replicas use
``STATE_URL=MICROCORE_TEST_REDIS`` (``redis://127.0.0.1:6379/15``) with a fresh
``STATE_PREFIX``, removed at the end.

1. cluster: two replicas, ``every(0.5)`` (each run 50 ms) for ``--seconds``: runs (the
   target is one per due time: 120 in 60 s, within 5 %), due times run twice, runs that
   overlapped, and each replica's share.
2. kill: the same with 200 ms runs, one replica SIGKILLed in the middle of a run at half
   time: the longest stretch without a run, against ``SCHEDULER_LEASE`` (``--lease``).
3. timing: one replica (same store), ``every(1)`` for ``--seconds`` runs, idle and under
   ``wrk -t1 -c<connections>`` on ``POST /products``: lateness of each start after its
   due time (p50, p99, max).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _report import UNIQUE_PRODUCTS_LUA, table  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
REDIS = os.environ.get("MICROCORE_TEST_REDIS", "redis://127.0.0.1:6379/15")
TOOLS = ("config", "logger", "http", "db", "event_bus", "state", "scheduler", "system")

BEAT = """
import os
import time

import anyio
from microcore import Plugin
from tools.scheduler import Scheduler

INTERVAL = float(os.environ["BEAT_INTERVAL"])
WORK = float(os.environ["BEAT_WORK"])


def note(what: str, when: float) -> None:
    with open(os.environ["BEAT_LOG"], "a") as log:  # one short append: atomic
        log.write(f"{what} {os.getpid()} {when:.6f}\\n")


class BeatPlugin(Plugin):
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def on_boot(self) -> None:
        self.scheduler.every(INTERVAL, self.beat)

    async def beat(self) -> None:
        note("start", time.time())
        await anyio.sleep(WORK)
        note("end", time.time())
"""


@dataclass
class Run:
    pid: int
    start: float
    end: float | None  # None: the replica died during the run


def read_runs(log: Path) -> list[Run]:
    found: list[Run] = []
    going: dict[int, Run] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        what, pid, when = line.split()
        if what == "start":
            going[int(pid)] = run = Run(int(pid), float(when), None)
            found.append(run)
        elif int(pid) in going:
            going.pop(int(pid)).end = float(when)
    return sorted(found, key=lambda r: r.start)


def overlaps(runs: list[Run]) -> int:
    done = [r for r in runs if r.end is not None]
    return sum(1 for a, b in itertools.pairwise(done) if a.end is not None and b.start < a.end)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def project(workdir: Path) -> Path:
    """A copy of this repository's app, tools and example domain, plus the beat plugin."""
    root = workdir / "project"
    for name in TOOLS:
        shutil.copytree(
            ROOT / "tools" / name,
            root / "tools" / name,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copy(ROOT / "tools" / "__init__.py", root / "tools" / "__init__.py")
    shutil.copytree(
        ROOT / "domains", root / "domains", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "app.py", root / "app.py")
    plugin = root / "domains" / "bench" / "plugins" / "beat_plugin.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(BEAT)
    return root


class Replica:
    """``uvicorn app:app`` of the bench project."""

    def __init__(self, root: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1"),
                *(f"--port={self.port}", "--no-access-log", "--log-level", "warning"),
            ],
            cwd=root,
            env={**os.environ, "MICROCORE_ENV": "production", "LOG_LEVEL": "WARNING", **env},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"a replica exited; see {log}")
            try:
                url = f"http://127.0.0.1:{self.port}/system/health"
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling a server that is starting

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()


@contextlib.contextmanager
def replicas(root: Path, count: int, env: dict[str, str], workdir: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for n in range(count):
            started.append(Replica(root, env, workdir / f"replica-{n}.log"))
        yield started
    finally:
        for replica in started:
            replica.stop()


def wait_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def settings(workdir: Path, name: str, **extra: str) -> dict[str, str]:
    return {
        "STATE_URL": REDIS,
        "STATE_PREFIX": f"bench-sched-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": f"sqlite:///{workdir}/{name}.db",
        "BEAT_LOG": str(workdir / f"{name}.beats"),
        **extra,
    }


def cleanup(prefixes: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


# -- 1. two replicas, once per due time ----------------------------------------------------


def cluster(root: Path, workdir: Path, seconds: int, prefixes: list[str]) -> list[tuple[str, ...]]:
    interval = 0.5
    env = settings(workdir, "cluster", BEAT_INTERVAL=str(interval), BEAT_WORK="0.05")
    prefixes.append(env["STATE_PREFIX"])
    log = Path(env["BEAT_LOG"])
    with replicas(root, 2, env, workdir):
        begin = math.ceil(time.time() + 1)
        wait_until(begin + seconds + 1)
    runs = [r for r in read_runs(log) if begin <= r.start < begin + seconds]
    expected = round(seconds / interval)
    dues = Counter(math.floor(r.start / interval) for r in runs)
    shares = Counter(r.pid for r in runs)
    return [
        ("due times", str(expected)),
        ("runs", f"{len(runs)} ({(len(runs) - expected) / expected:+.1%})"),
        ("due times run twice", str(sum(1 for n in dues.values() if n > 1))),
        ("runs overlapping another", str(overlaps(runs))),
        ("runs per replica", " / ".join(str(n) for n in sorted(shares.values(), reverse=True))),
    ]


# -- 2. one replica SIGKILLed mid-run --------------------------------------------------------


def kill(
    root: Path, workdir: Path, seconds: int, lease: float, prefixes: list[str]
) -> list[tuple[str, ...]]:
    interval = 0.5
    env = settings(
        workdir, "kill", BEAT_INTERVAL=str(interval), BEAT_WORK="0.2", SCHEDULER_LEASE=str(lease)
    )
    prefixes.append(env["STATE_PREFIX"])
    log = Path(env["BEAT_LOG"])
    with replicas(root, 2, env, workdir) as both:
        begin = math.ceil(time.time() + 1)
        wait_until(begin + seconds / 2)
        while True:  # the newest run has started and not ended: kill its replica now
            found = read_runs(log)
            if found and found[-1].end is None:
                victim = found[-1]
                break
            time.sleep(0.002)  # polling the shared log
        dying = next(r for r in both if r.process.pid == victim.pid)
        dying.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        dying.process.wait(timeout=10)
        wait_until(begin + seconds + 1)
    runs = [r for r in read_runs(log) if begin <= r.start < begin + seconds]
    after = [r for r in runs if r.start > victim.start]
    resumed = after[0].start - victim.start if after else float("inf")
    gaps = [b.start - a.start for a, b in itertools.pairwise(runs)]
    lost = max(0, round(resumed / interval) - 1)
    return [
        ("SCHEDULER_LEASE", f"{lease:g} s"),
        (
            "killed at (after start)",
            f"{killed_at - begin:.2f} s, {killed_at - victim.start:.3f} s into a run",
        ),
        ("killed run finished", "no" if victim.end is None else "yes"),
        (
            "next run after the killed one",
            f"{resumed:.2f} s later (lease + {resumed - lease:.2f} s)",
        ),
        ("due times not run", f"{lost} ({lost * interval:.1f} s)"),
        ("longest gap between runs", f"{max(gaps):.2f} s"),
        ("runs in the window", f"{len(runs)} of {round(seconds / interval)} due times"),
        ("runs overlapping another", str(overlaps(runs))),
        ("runs after the kill by the dead pid", str(sum(r.pid == victim.pid for r in after))),
    ]


# -- 3. timing of every(1) ---------------------------------------------------------------------


def wrk(port: int, lua: Path, seconds: int, connections: int) -> subprocess.Popen[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua)]
    return subprocess.Popen(
        [*command, f"http://127.0.0.1:{port}/products"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def timing(
    root: Path, workdir: Path, runs: int, connections: int, prefixes: list[str]
) -> list[tuple[str, ...]]:
    lua = workdir / "post.lua"
    lua.write_text(UNIQUE_PRODUCTS_LUA)
    rows = []
    for label, loaded in (("idle", False), (f"wrk -c{connections} POST /products", True)):
        env = settings(workdir, f"timing-{int(loaded)}", BEAT_INTERVAL="1", BEAT_WORK="0")
        prefixes.append(env["STATE_PREFIX"])
        log = Path(env["BEAT_LOG"])
        with replicas(root, 1, env, workdir) as (replica,):
            begin = math.ceil(time.time() + 2)
            load = wrk(replica.port, lua, runs + 4, connections) if loaded else None
            wait_until(begin + runs + 0.9)
            rps = "-"
            if load is not None:
                out, _ = load.communicate(timeout=60)
                found = re.search(r"Requests/sec:\s+([\d.]+)", out)
                rps = f"{float(found.group(1)):.0f}" if found else "?"
        starts = [r.start for r in read_runs(log) if begin <= r.start < begin + runs]
        late = [(s - math.floor(s)) * 1000 for s in starts]
        rows.append(
            (
                label,
                str(len(starts)),
                f"{percentile(late, 0.5):.1f}",
                f"{percentile(late, 0.99):.1f}",
                f"{max(late):.1f}",
                rps,
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of each scenario")
    parser.add_argument("--lease", type=float, default=10.0, help="SCHEDULER_LEASE of the kill")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    args = parser.parse_args()
    prefixes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        workdir = Path(tmp)
        root = project(workdir)
        try:
            print(
                table(
                    f"1. two replicas on Redis, every(0.5) for {args.seconds} s (50 ms runs)",
                    ("", "value"),
                    cluster(root, workdir, args.seconds, prefixes),
                ),
                flush=True,
            )
            print(
                table(
                    f"2. two replicas, every(0.5) for {args.seconds} s (200 ms runs), "
                    f"one SIGKILLed mid-run at {args.seconds // 2} s",
                    ("", "value"),
                    kill(root, workdir, args.seconds, args.lease, prefixes),
                ),
                flush=True,
            )
            print(
                table(
                    f"3. every(1), {args.seconds} runs on one replica (Redis lease): lateness "
                    "of each start after its due time",
                    ("load", "runs", "p50 ms", "p99 ms", "max ms", "req/s"),
                    timing(root, workdir, args.seconds, args.connections, prefixes),
                ),
                flush=True,
            )
        finally:
            cleanup(prefixes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
