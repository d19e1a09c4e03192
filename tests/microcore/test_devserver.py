"""The dev server: plugins reload in-process; tool changes restart the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from watchfiles import Change

from microcore._dev.devserver import dev_command, restart_paths, restarts_for, serve_dev
from tests.conftest import ProjectFactory
from tests.support import free_port, poll_url, wait_until_serving

PLUGIN = """
import os
from microcore import Plugin

class PidPlugin(Plugin):
    def __init__(self, http):
        self.http = http

    async def on_boot(self):
        self.http.add_endpoint("/pid", "GET", self.pid)

    async def pid(self, data, context):
        return {"pid": os.getpid(), "marker": MARKER}

MARKER = "v1"
"""

SERVE = """
import sys
from pathlib import Path
from microcore._dev.devserver import serve_dev
serve_dev(Path.cwd(), port=int(sys.argv[1]))
"""


def test_serve_dev_without_restart_paths_runs_uvicorn_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing to watch for restarts, the dev server is uvicorn with reload settings."""
    seen: dict[str, object] = {}

    def fake_call(command: list[str], cwd: Path, env: dict[str, str]) -> int:
        seen.update(command=command, cwd=cwd, env=env)
        return 0

    monkeypatch.setattr("subprocess.call", fake_call)
    assert serve_dev(tmp_path, port=9, environ={"MICROCORE_ENV": "production"}) == 0
    assert seen["cwd"] == tmp_path
    env = seen["env"]
    assert (env["MICROCORE_ENV"], env["MICROCORE_RELOAD"]) == ("development", "1")  # type: ignore[index]


def test_restart_paths_and_command(tmp_path: Path) -> None:
    """The supervisor watches what exists of tools/, app.py, .env and microcore/ (never
    domains/: it reloads in-process); the command runs uvicorn, which leaves forwarded
    headers to the app."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "app.py").write_text("")
    (tmp_path / "domains").mkdir()
    assert restart_paths(tmp_path) == [tmp_path / "tools", tmp_path / "app.py"]
    assert dev_command(host="127.0.0.1", port=9)[1:] == [
        "-m",
        "uvicorn",
        "app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "9",
        "--timeout-graceful-shutdown",
        "3",
        "--no-proxy-headers",
    ]


def test_restart_filter_passes_what_cannot_reload_in_process(tmp_path: Path) -> None:
    """Tools, kernel, app.py and .env restart; plugins, helpers, migrations (applied
    in-process) and noise do not."""
    restarts = restarts_for(tmp_path)
    for rel in (
        "tools/db/db_tool.py",
        "microcore/_kernel.py",
        "app.py",
        ".env",
    ):
        assert restarts(Change.modified, str(tmp_path / rel)), rel
    for rel in (
        "domains/shop/plugins/create_plugin.py",
        "domains/shop/models.py",
        "domains/shop/migrations/README.md",
        "domains/shop/migrations/002_add_price.sql",
        "domains/shop/plugins/__pycache__/create_plugin.cpython-311.pyc",
        "tools/db/.db_tool.py.swp",
        "notes.txt",
    ):
        assert not restarts(Change.modified, str(tmp_path / rel)), rel
    assert not restarts(Change.modified, str(tmp_path))
    assert not restarts(Change.modified, "/elsewhere/tools/x.py")


def test_dev_server_reloads_plugins_in_process_and_restarts_for_tools(
    make_project: ProjectFactory,
) -> None:
    """A plugin edit and a new migration keep the PID; a tool edit restarts the server."""
    root = make_project(
        {
            "app.py": "from microcore import create_app\n\napp = create_app()\n",
            "domains/d/plugins/pid_plugin.py": PLUGIN,
            # exists before the server starts: a file created in a brand-new folder can
            # beat the watcher to it (inotify watches a new folder only once it has seen it)
            "domains/d/migrations/README.md": "schema changes, one file each",
            "serve.py": SERVE,
        },
        tools=["config", "logger", "http"],
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "serve.py", str(port)],
        cwd=root,
        env={**os.environ, "LOG_FORMAT": "json"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/pid"
    try:
        wait_until_serving(url, process)
        first = poll_url(url, lambda r: r.json()["marker"] == "v1").json()
        plugin = root / "domains/d/plugins/pid_plugin.py"
        plugin.write_text(PLUGIN.replace('MARKER = "v1"', 'MARKER = "v2"'))
        second = poll_url(url, lambda r: r.json()["marker"] == "v2").json()
        assert second["pid"] == first["pid"]

        tool = Path(root / "tools/logger/logger_tool.py")
        tool.write_text(tool.read_text() + "\n# touched\n")
        third = poll_url(url, lambda r: r.json()["pid"] != first["pid"]).json()
        assert third["marker"] == "v2"

        migration = root / "domains/d/migrations/001_create_things.sql"
        migration.write_text("CREATE TABLE things (id INTEGER PRIMARY KEY);\n")
        plugin.write_text(PLUGIN.replace('MARKER = "v1"', 'MARKER = "v3"'))  # saved after it
        fourth = poll_url(url, lambda r: r.json()["marker"] == "v3").json()
        assert fourth["pid"] == third["pid"]  # the migration did not restart the server
    finally:
        process.terminate()
        process.wait(timeout=20)
