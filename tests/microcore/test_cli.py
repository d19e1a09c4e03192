"""The microcore command line: dev, context, routes, events, errors and python -m microcore."""

from __future__ import annotations

import argparse
import importlib
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from microcore._dev import cli as _cli
from microcore._dev.cli import main
from tests.conftest import ProjectFactory

REPO = Path(__file__).resolve().parents[2]

PLUGIN = """
from microcore import Plugin


class HelloPlugin(Plugin):
    def __init__(self, logger):
        self.logger = logger
"""

FAILING = """
from microcore import Plugin


class BadPlugin(Plugin):
    def __init__(self, payments):
        self.payments = payments
"""

BROKEN_TOOL = """
from microcore import Tool


class BrokenTool(Tool):
    name = "broken"

    async def setup(self):
        raise RuntimeError("down")
"""


def test_dev_serves_app_with_reload(
    make_project: ProjectFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """dev serves the project through the dev supervisor, creating .env from the example."""
    root = make_project({"app.py": "app = None\n", ".env.example": "A=1\n"}, tools=["config"])
    calls: list[tuple[Path, dict[str, object]]] = []

    def serve_dev(root: Path, **kw: object) -> int:
        calls.append((root, kw))
        return 0

    monkeypatch.setattr("microcore._dev.devserver.serve_dev", serve_dev)
    assert main(["dev", "--root", str(root), "--port", "9001"]) == 0
    assert calls == [(root, {"host": "127.0.0.1", "port": 9001})]
    assert (root / ".env").read_text() == "A=1\n"
    assert capsys.readouterr().out == "created .env from .env.example\n"
    (root / ".env").write_text("A=2\n")
    assert main(["dev", "--root", str(root), "--host", "0.0.0.0"]) == 0
    assert calls[-1][1]["host"] == "0.0.0.0"
    assert (root / ".env").read_text() == "A=2\n"


def test_dev_without_env_example(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without .env.example, dev starts without writing a .env."""
    root = make_project({"app.py": "app = None\n"}, tools=["config"])
    monkeypatch.setattr("microcore._dev.devserver.serve_dev", lambda root, **kw: 0)
    assert main(["dev", "--root", str(root)]) == 0
    assert not (root / ".env").exists()


def test_dev_needs_app_py(make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """dev in a project without app.py says what app.py should hold."""
    root = make_project({}, tools=["config"])
    assert main(["dev", "--root", str(root)]) == 1
    assert "no app.py in" in capsys.readouterr().err


def test_commands_need_a_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside a project, commands fail with one line naming the folder."""
    assert main(["routes", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"microcore: error: no microcore project in {tmp_path} (no tools/ or domains/ folder); "
        "run inside a project or pass --root DIR\n"
    )


def test_context_writes_checks_and_reports_staleness(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """context writes the file with its size; --check passes, then fails with a diff summary."""
    root = make_project({"domains/a/plugins/hello_plugin.py": PLUGIN}, tools=["config", "logger"])
    assert main(["context", "--check", "--root", str(root)]) == 1
    assert "AI_CONTEXT.md is missing; run 'microcore context'" in capsys.readouterr().err
    assert main(["context", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote AI_CONTEXT.md: ") and " tokens" in out
    assert main(["context", "--check", "--root", str(root)]) == 0
    assert "is up to date" in capsys.readouterr().out
    path = root / "AI_CONTEXT.md"
    original = path.read_text()
    path.write_text(original.replace("HelloPlugin", "OldPlugin") + "extra line\n")
    assert main(["context", "--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("AI_CONTEXT.md is stale: 1 lines added, 2 removed\n")
    assert "  -- `OldPlugin`" in err and "  +- `HelloPlugin`" in err
    assert err.endswith("run 'microcore context' and commit AI_CONTEXT.md\n")
    path.write_text("\n".join(f"line {i}" for i in range(20)))
    assert main(["context", "--check", "--root", str(root)]) == 1
    assert "more changed lines" in capsys.readouterr().err


def test_context_warns_about_failures(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failed tools and plugins are written down and warned about on stderr."""
    root = make_project(
        {"domains/a/plugins/bad_plugin.py": FAILING, "tools/broken/broken_tool.py": BROKEN_TOOL},
        tools=[],
    )
    assert main(["context", "--root", str(root)]) == 0
    err = capsys.readouterr().err
    assert "warning: tool 'broken' failed: tools/broken/broken_tool.py:9: RuntimeError: down" in err
    assert "warning: plugin 'a.BadPlugin' failed: " in err
    assert "FAILED: " in (root / "AI_CONTEXT.md").read_text()


def test_routes_and_events_tables(capsys: pytest.CaptureFixture[str]) -> None:
    """routes and events print aligned tables of the example app."""
    assert main(["routes", "--root", str(REPO)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["METHOD", "PATH", "STATUS", "OWNER", "SUMMARY"]
    assert any(
        line.split()[:2] == ["POST", "/products"] and "products.CreateProductPlugin" in line
        for line in lines
    )
    assert main(["events", "--root", str(REPO)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "SENT", "BY", "HANDLED", "BY"]
    assert [
        "event",
        "product.created",
        "products.CreateProductPlugin",
        "products.ProductStatsPlugin,",
        "products.price_format",  # the JavaScript sidecar
    ] in [line.split() for line in lines]


def test_routes_and_events_of_an_empty_project(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project that serves nothing says so."""
    root = make_project({"domains/__init__.py": ""}, tools=[])
    assert main(["routes", "--root", str(root)]) == 0
    assert main(["events", "--root", str(root)]) == 0
    assert capsys.readouterr().out == "no routes\nno events\n"


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong command line prints one error line and exits 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("microcore: error: argument COMMAND: invalid choice: 'nope'")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["add"])
    assert "microcore add: error: the following arguments are required: WHAT" in (
        capsys.readouterr().err
    )


def test_unexpected_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception is one line naming its type; Ctrl-C exits 130 quietly."""

    def boom(args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    def interrupt(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "cmd_check", boom)
    assert main(["check"]) == 1
    assert capsys.readouterr().err == "microcore: error: RuntimeError: boom\n"
    monkeypatch.setattr(_cli, "cmd_check", interrupt)
    assert main(["check"]) == 130
    assert capsys.readouterr().err == ""


def test_python_m_microcore(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """python -m microcore runs the same command line and exits with its status."""
    monkeypatch.setattr(sys, "argv", ["microcore", "check", "--root", str(REPO)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "microcore" / "__main__.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("ok: ")
    module = importlib.import_module("microcore.__main__")  # imported, it runs nothing
    assert module.main is main


def test_console_script_is_installed() -> None:
    """The microcore console script answers --help."""
    script = Path(sys.executable).parent / "microcore"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for command in ("new", "dev", "context", "check", "add", "routes", "events"):
        assert command in result.stdout
