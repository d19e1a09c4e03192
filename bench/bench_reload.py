"""Hot reload: microcore in-process reload vs uvicorn --reload, uvicorn-hmr and SIGHUP.

Same edits for every tool, measured side by side in one run: each edit changes one
character of the file that holds the handler (a version digit cycling 0-9, so the
file keeps its size and several edits land within one mtime second), then the
script polls until a response shows the new version and records the time from the
write to that first new response. A version not served within ``--timeout`` seconds
counts as never served. A second client sends light continuous load (``--rate``
GETs a second) through every edit and counts failed requests (transport errors and
non-200 answers). Servers run on loopback WITHOUT ``PYTHONDONTWRITEBYTECODE``, as on a
developer's machine, so a tool that reads stale ``__pycache__`` shows it.

Tools:

* ``microcore (in-process)``: ``MICROCORE_RELOAD=1 uvicorn app:app``; the plugin reloads
  inside the running server.
* ``uvicorn --reload``: a Starlette app; the watcher restarts the worker process.
* ``uvicorn-hmr``: the same Starlette app under ``uvicorn-hmr app:app`` (PyPI
  ``uvicorn-hmr`` on ``hmr``): changed modules re-execute and the server restarts in
  the process. Installed into its own virtualenv ``bench/.venv/reload`` on first run;
  ``hmr`` needs Python >= 3.12 (found on PATH or under ``~/.pyenv/versions``).
* ``uvicorn SIGHUP (2 workers)``: the same Starlette app under ``uvicorn --workers 2``;
  after each write the script sends SIGHUP to the supervisor, which replaces the
  workers one by one (the uvicorn here, 0.55, starts each replacement before retiring the
  old worker; it polls for signals every 0.5 s). With ``--workers 1`` uvicorn runs no
  supervisor and SIGHUP ends the server, so that row only says why. The next edit waits
  until both workers are new.

Run: .venv/bin/python bench/bench_reload.py [--edits 20] [--tools microcore hmr ...]
Soak: .venv/bin/python bench/bench_reload.py --soak 1000   (see bench/_reload_soak.py)
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _reload_kit import (  # bench/ is the script's folder
    MICROCORE_ENV,
    MICROCORE_PLUGIN,
    REPO,
    STARLETTE_APP,
    Load,
    Server,
    free_port,
    microcore_project,
    quantile,
    reload_loop,
    server_env,
)
from _report import table

HMR_VENV = REPO / "bench" / ".venv" / "reload"
HMR_PYTHON = HMR_VENV / "bin" / "python"
HMR_PACKAGES = ["uvicorn-hmr", "starlette"]
SIGHUP_WORKERS = 2


@dataclass
class Row:
    name: str
    latencies: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # per unserved edit: stale or no answer
    edits: int = 0
    requests: int = 0
    failed: int = 0
    why_not: str | None = None  # set when the row could not be measured here


@dataclass
class Setup:
    """How to run one tool on a fresh project folder."""

    target: Path
    template: str
    command: list[str]
    env: dict[str, str]
    port: int
    trigger: Callable[[Server], None] | None = None
    settle: Callable[[Server, set[int]], None] | None = None


def starlette_app(root: Path) -> Path:
    app = root / "app.py"
    app.write_text(STARLETTE_APP.format(version=0))
    return app


def uvicorn_cmd(python: str, port: int, *extra: str) -> list[str]:
    return [
        python, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", *extra,
    ]  # fmt: skip


def setup_microcore(root: Path) -> Setup:
    port = free_port()
    target = microcore_project(root)
    return Setup(target, MICROCORE_PLUGIN, uvicorn_cmd(sys.executable, port), MICROCORE_ENV, port)


def setup_uvicorn_reload(root: Path) -> Setup:
    port = free_port()
    command = uvicorn_cmd(sys.executable, port, "--reload")
    return Setup(starlette_app(root), STARLETTE_APP, command, {}, port)


def setup_hmr(root: Path) -> Setup:
    port = free_port()
    command = [
        str(HMR_VENV / "bin" / "uvicorn-hmr"), "app:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    return Setup(starlette_app(root), STARLETTE_APP, command, {}, port)


def setup_sighup(root: Path) -> Setup:
    port = free_port()
    command = uvicorn_cmd(sys.executable, port, "--workers", str(SIGHUP_WORKERS))

    def trigger(server: Server) -> None:
        server.proc.send_signal(signal.SIGHUP)

    def settle(server: Server, before: set[int]) -> None:
        """Wait until every worker is a replacement (the rolling restart is over)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = workers(server)
            if len(now) == SIGHUP_WORKERS and not now & before:
                return
            time.sleep(0.01)  # polling interval
        raise TimeoutError(f"SIGHUP restart did not finish:\n{server.tail()}")

    return Setup(starlette_app(root), STARLETTE_APP, command, {}, port, trigger, settle)


def workers(server: Server) -> set[int]:
    """The supervisor's worker processes (its children less multiprocessing's resource tracker)."""
    found = set()
    for pid in server.children():
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue  # exited meanwhile
    return found


def hmr_python() -> str | None:
    """A Python >= 3.12 to build the hmr virtualenv with (hmr requires it)."""
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")))
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")] + pyenv[::-1]
    check = "import sys, venv; sys.exit(sys.version_info < (3, 12))"
    for python in filter(None, candidates):
        if subprocess.run([python, "-c", check], capture_output=True).returncode == 0:
            return python  # pyenv shims on PATH may name a Python that is not installed
    return None


def ensure_hmr() -> str | None:
    """Build bench/.venv/reload with uvicorn-hmr once; the reason when it cannot be had."""
    check = [str(HMR_PYTHON), "-c", "import uvicorn_hmr, starlette"]
    if HMR_PYTHON.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return None
    python = hmr_python()
    if python is None:
        return "needs Python >= 3.12 (hmr requires it); none on PATH or in ~/.pyenv"
    print(f"creating {HMR_VENV} with {python} and {' '.join(HMR_PACKAGES)} ...", flush=True)
    try:
        subprocess.run([python, "-m", "venv", "--clear", str(HMR_VENV)], check=True)
        subprocess.run(
            [str(HMR_PYTHON), "-m", "pip", "install", "--quiet", *HMR_PACKAGES],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        return f"could not install {' '.join(HMR_PACKAGES)}: {exc}"
    return None


def run(name: str, make: Callable[[Path], Setup], args: argparse.Namespace) -> Row:
    row = Row(name, edits=args.edits)
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        setup = make(root)
        server = Server(setup.command, root, server_env(setup.env), setup.port)
        try:
            server.wait_ready()
            before: set[int] = set()

            def trigger() -> None:
                nonlocal before
                before = workers(server)
                if setup.trigger is not None:
                    setup.trigger(server)

            def settle() -> None:
                if setup.settle is not None:
                    setup.settle(server, before)

            with Load(server.url + "/hello", args.rate) as load:
                row.latencies, row.missed = reload_loop(
                    server, setup.target, setup.template, args.edits,
                    timeout=args.timeout, pause=args.pause, trigger=trigger, settle=settle,
                )  # fmt: skip
            row.requests, row.failed = load.ok + load.failed, load.failed
        except (RuntimeError, TimeoutError) as exc:
            row.why_not = f"failed: {str(exc).splitlines()[0]}"
            print(f"{name}: {exc}", file=sys.stderr)
        finally:
            server.stop()
    print(f"measured {name}", flush=True)
    return row


def versions() -> str:
    def version(python: Path | str, package: str) -> str:
        code = f"import importlib.metadata as m; print(m.version({package!r}))"
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
        return done.stdout.strip() or "?"

    found = [f"uvicorn {version(sys.executable, 'uvicorn')}"]
    if HMR_PYTHON.exists():
        found += [f"{p} {version(HMR_PYTHON, p)}" for p in ("uvicorn-hmr", "hmr")]
        found.append(f"uvicorn {version(HMR_PYTHON, 'uvicorn')} (hmr venv)")
    return ", ".join(found)


TOOLS: dict[str, tuple[str, Callable[[Path], Setup]]] = {
    "microcore": ("microcore (in-process)", setup_microcore),
    "uvicorn-reload": ("uvicorn --reload", setup_uvicorn_reload),
    "hmr": ("uvicorn-hmr", setup_hmr),
    "sighup": (f"uvicorn SIGHUP ({SIGHUP_WORKERS} workers)", setup_sighup),
}


def report(rows: list[Row], args: argparse.Namespace) -> str:
    base = next((r for r in rows if r.name == "uvicorn --reload" and r.latencies), None)
    header = (
        "tool", "p50 ms", "p95 ms", "max ms", "served", "requests", "failed",
        "failed/reload", "p50 vs --reload",
    )  # fmt: skip
    lines: list[tuple[str, ...]] = []
    notes: list[str] = []
    for row in rows:
        if row.why_not is not None or not row.latencies:
            lines.append((row.name, *(["-"] * (len(header) - 1))))
            notes.append(f"{row.name}: not measured: {row.why_not or 'no version served'}")
            continue
        speedup = (
            f"{quantile(base.latencies, 0.5) / quantile(row.latencies, 0.5):.1f}x" if base else "-"
        )
        lines.append((
            row.name,
            f"{quantile(row.latencies, 0.5):.1f}",
            f"{quantile(row.latencies, 0.95):.1f}",
            f"{max(row.latencies):.1f}",
            f"{row.edits - len(row.missed)}/{row.edits}",
            str(row.requests),
            str(row.failed),
            f"{row.failed / row.edits:.1f}",
            speedup,
        ))  # fmt: skip
        if row.missed:
            stale, silent = row.missed.count("stale"), row.missed.count("no answer")
            notes.append(
                f"{row.name}: {len(row.missed)} of {row.edits} one-character edits never served "
                f"within {args.timeout:g} s ({stale} still answering the previous version: "
                f"stale code; {silent} not answering); latencies cover the served ones"
            )
    notes.append(
        "uvicorn SIGHUP (1 worker): not measured: with --workers 1 uvicorn runs no supervisor "
        "and SIGHUP ends the server; the rolling restart needs --workers >= 2"
    )
    title = (
        f"write -> first new response, {args.edits} one-character edits each, "
        f"light load {args.rate:g} GET/s, no PYTHONDONTWRITEBYTECODE"
    )
    return table(title, header, lines) + "\n" + "\n".join(notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    parser.add_argument("--rate", type=float, default=200.0, help="GET/s of the background load")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="s before a version counts as never served"
    )
    parser.add_argument(
        "--pause", type=float, default=0.05, help="s between a served edit and the next"
    )
    parser.add_argument(
        "--soak", type=int, metavar="RELOADS", help="run the soak (_reload_soak.py)"
    )
    parser.add_argument(
        "--sse-reloads", type=int, default=5, help="soak: reloads with 20 SSE clients open"
    )
    args = parser.parse_args()
    if args.soak:
        from _reload_soak import soak

        return soak(args.soak, rate=args.rate, pause=args.pause, sse_reloads=args.sse_reloads)
    hmr_missing = ensure_hmr() if "hmr" in args.tools else None
    print(f"versions: {versions()}", flush=True)
    rows: list[Row] = []
    for key in args.tools:
        name, make = TOOLS[key]
        if key == "hmr" and hmr_missing is not None:
            rows.append(Row(name, why_not=hmr_missing))
            continue
        rows.append(run(name, make, args))
    print()
    print(report(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
