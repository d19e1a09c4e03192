"""``microcore dev``: serve with in-process plugin reload, restart only for what cannot reload.

Plugin and domain files, migrations included, reload inside the running server
(``MICROCORE_RELOAD=1``, see ``reload.py``). Changes to tools, ``app.py``, ``.env``
or the kernel cannot be applied in-process (see ``restart_reason``), so a small
supervisor restarts the server for those alone.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from .reload import restart_reason

if TYPE_CHECKING:
    from watchfiles import Change

__all__ = ("dev_command", "restart_paths", "restarts_for", "serve_dev")

_log = structlog.get_logger("microcore")

_RESTART_ON = ("tools", "app.py", ".env", "microcore")  # domains/ reloads in-process


def restart_paths(root: Path) -> list[Path]:
    """What the supervisor watches (only those that exist); :func:`restarts_for`
    picks the changes in them that restart the server."""
    return [root / name for name in _RESTART_ON if (root / name).exists()]


def restarts_for(root: Path) -> Callable[[Change, str], bool]:
    """The supervisor's filter: editor and cache noise never restarts; of the rest,
    what :func:`restart_reason` names (plugin files reload in-process instead)."""
    import watchfiles

    noise = watchfiles.DefaultFilter()
    base = root.resolve()

    def restarts(change: Change, path: str) -> bool:
        if not noise(change, path):
            return False
        try:
            parts = Path(path).resolve().relative_to(base).parts
        except ValueError:
            return False
        return restart_reason(parts) is not None

    return restarts


def dev_command(*, host: str, port: int, app: str = "app:app") -> list[str]:
    """The uvicorn command the supervisor runs.

    Open server-sent event streams (the dashboard's feed) never end on their own, so
    graceful shutdown is bounded: a restart never waits on a browser tab. Uvicorn does
    not apply ``X-Forwarded-*`` headers itself: the http tool decides whom to believe
    (``HTTP_TRUSTED_PROXIES``).
    """
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        host,
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        "3",
        "--no-proxy-headers",
    ]


def serve_dev(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    app: str = "app:app",
    environ: Mapping[str, str] | None = None,
) -> int:
    """Serve ``app`` from ``root`` in development with hot reload; returns the exit code."""
    import watchfiles

    env = dict(os.environ if environ is None else environ)
    env["MICROCORE_ENV"] = "development"
    env["MICROCORE_RELOAD"] = "1"
    command = dev_command(host=host, port=port, app=app)
    watched = restart_paths(root)
    _log.info(
        "dev_server",
        url=f"http://{host}:{port}",
        reloads_in_process="domains",
        restarts_on=[p.name for p in watched],
    )
    if not watched:  # nothing that needs a restart exists: no supervisor needed
        return subprocess.call(command, cwd=root, env=env)
    previous = Path.cwd()
    os.chdir(root)  # run_process starts the command in the current folder
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        watchfiles.run_process(
            *watched,
            target=shlex.join(command),
            target_type="command",
            callback=_restarting,
            watch_filter=restarts_for(root),
            debounce=200,
            step=20,
        )
    finally:
        os.chdir(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return 0


def _restarting(changes: set[tuple[Change, str]]) -> None:
    root = Path.cwd()  # serve_dev runs the supervisor from the project root
    files: dict[str, str] = {}
    for _, path in changes:
        rel = Path(os.path.relpath(path, root))
        files[rel.as_posix()] = restart_reason(rel.parts) or "changed"
    _log.warning("dev_server_restarting", files=dict(sorted(files.items())))
