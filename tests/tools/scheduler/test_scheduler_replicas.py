"""Once per cluster with real replicas: two uvicorn processes of one project on the local
Redis run a job once per due time and never two runs at a time; SIGKILL one mid-run and
the other takes the job over once the dead replica's lease expires.

The job appends ``start <pid> <time>`` and ``end <pid> <time>`` lines to one file, which
both processes share; the test reads what happened from it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ProjectFactory
from tests.support import eventually, free_port, wait_until_serving

INTERVAL = 0.25  # every(INTERVAL)
WORK = 0.1  # how long each run takes
LEASE = 1.0  # SCHEDULER_LEASE

APP = "from microcore import create_app\n\napp = create_app()\n"
BEAT = f"""
import os
import time

import anyio
from microcore import Plugin
from tools.scheduler import Scheduler


def note(what):
    with open(os.environ["BEAT_LOG"], "a") as log:
        log.write(f"{{what}} {{os.getpid()}} {{time.time():.6f}}\\n")


class BeatPlugin(Plugin):
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def on_boot(self) -> None:
        self.scheduler.every({INTERVAL}, self.beat)

    async def beat(self) -> None:
        note("start")
        await anyio.sleep({WORK})
        note("end")
"""
TOOLS = ["config", "logger", "http", "state", "scheduler", "system"]


@dataclass
class Run:
    pid: int
    start: float
    end: float | None  # None: the process died during the run


def runs(log: Path) -> list[Run]:
    """Every run in the log, in start order (a run's end follows its start, same pid)."""
    found: list[Run] = []
    open_runs: dict[int, Run] = {}
    text = log.read_text() if log.exists() else ""
    for line in text.splitlines():
        what, pid, when = line.split()
        if what == "start":
            open_runs[int(pid)] = run = Run(int(pid), float(when), None)
            found.append(run)
        else:
            open_runs.pop(int(pid)).end = float(when)
    return found


def overlapping(found: list[Run]) -> list[tuple[Run, Run]]:
    """Pairs of finished runs of which one started before the other ended."""
    done = sorted((r for r in found if r.end is not None), key=lambda r: r.start)
    return [(a, b) for a, b in itertools.pairwise(done) if b.start < (a.end or 0)]


@contextmanager
def replica(root: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``uvicorn app:app`` of ``root`` on a free port; killed on exit if still running."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env={**os.environ, "LOG_FORMAT": "json", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/system/health", process)
        yield process, base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung server is a bug
                process.kill()
                process.wait(timeout=5)


async def test_two_replicas_run_each_due_time_once_and_survive_a_kill(
    make_project: ProjectFactory, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Both replicas up: one run per due time, never two at once. One SIGKILLed mid-run:
    its run never ends, the survivor leaves the job alone until the lease expires, then
    runs it again within one lease (plus one interval)."""
    root = make_project({"app.py": APP, "domains/clock/plugins/beat_plugin.py": BEAT}, tools=TOOLS)
    log = tmp_path / "beats.log"
    env = {
        "STATE_URL": redis_url,
        "STATE_PREFIX": redis_prefix,
        "SCHEDULER_LEASE": str(LEASE),
        "BEAT_LOG": str(log),
        "MICROCORE_ENV": "development",
        "LOG_LEVEL": "WARNING",
    }
    with ExitStack() as stack:
        (first, first_url), (second, second_url) = (
            stack.enter_context(replica(root, env)) for _ in "ab"
        )
        both_up = max(r.start for r in runs(log)) if runs(log) else 0.0

        def finished_after_both_up(n: int) -> bool:
            return sum(r.end is not None and r.start > both_up for r in runs(log)) >= n

        await eventually(lambda: finished_after_both_up(8), timeout=30)
        window = [r for r in runs(log) if r.start > both_up and r.end is not None]
        span = window[-1].start - window[0].start
        assert len(window) <= round(span / INTERVAL) + 1  # never two runs of one due time
        assert overlapping(runs(log)) == []

        # SIGKILL a replica in the middle of a run (a start line without its end)
        def in_progress() -> Run | None:
            found = runs(log)
            last = found[-1] if found else None
            return last if last is not None and last.end is None else None

        await eventually(lambda: in_progress() is not None, timeout=30, interval=0.001)
        victim = in_progress()
        assert victim is not None
        dying = first if victim.pid == first.pid else second
        dying.send_signal(signal.SIGKILL)
        dying.wait(timeout=10)
        survivor, survivor_url = (second, second_url) if dying is first else (first, first_url)
        killed_run = next(r for r in runs(log) if r.start == victim.start)

        def taken_over() -> list[Run]:
            return [r for r in runs(log) if r.start > victim.start and r.end is not None]

        await eventually(lambda: len(taken_over()) >= 3, timeout=30)
        after = taken_over()
        assert killed_run.end is None  # it really died mid-run
        assert {r.pid for r in after} == {survivor.pid}
        # the dead run's lease kept the job from stacking a run on it, then freed itself
        assert after[0].start >= victim.start + LEASE - 0.05
        assert after[0].start - victim.start <= LEASE + INTERVAL + 2.0  # slack for a busy box
        assert overlapping(runs(log)) == []
        async with httpx.AsyncClient(base_url=survivor_url, timeout=10) as client:
            status = (await client.get("/system/status")).json()
        [job] = status["jobs"]
        assert (job["owner"], job["name"], job["schedule"]) == (
            "clock.BeatPlugin",
            "beat",
            "every 0.25s",
        )
        assert job["skips"] >= 1  # the due times the dead replica's lease held
