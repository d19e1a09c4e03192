"""The ``microcore`` command line: new, dev, context, check, add plugin, tools upgrade,
routes, events.

Errors are one line on stderr (``microcore: error: ...``) and a non-zero exit
status, never a traceback::

    microcore new shop-api && cd shop-api && make test
    microcore add plugin orders create_order
    microcore context --check
    microcore tools upgrade --dry-run
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import anyio

from .. import __version__
from .._core.errors import MicroCoreError
from .bundle import BundleError, bundle_root
from .checks import check_project
from .manifest import CONTEXT_FILE, Manifest, describe_project, render
from .scaffold import PluginShape, add_plugin, new_project
from .upgrade import LOCK_FILE, NEW_SUFFIX, upgrade_tools

__all__ = ("main",)

_DIFF_LINES = 12


class CommandError(MicroCoreError):
    """A command cannot run as asked; the message says why and what to do."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _project(args: argparse.Namespace) -> Path:
    root = Path(args.root).resolve()
    if not (root / "tools").is_dir() and not (root / "domains").is_dir():
        raise CommandError(
            f"no microcore project in {root} (no tools/ or domains/ folder); "
            "run inside a project or pass --root DIR"
        )
    return root


def _describe(root: Path) -> Manifest:
    manifest = anyio.run(describe_project, root)
    for tool in manifest.tools:
        if tool.error is not None:
            _err(f"warning: tool {tool.name!r} failed: {tool.error}")
    for plugin in manifest.plugins:
        if plugin.error is not None:
            _err(f"warning: plugin {plugin.identity!r} failed: {plugin.error}")
    return manifest


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def _tokens(text: str) -> str:
    return f"{len(text):,} characters, about {len(text) // 4:,} tokens"


# -- commands ---------------------------------------------------------------------------


def cmd_new(args: argparse.Namespace) -> int:
    target = new_project(Path(args.dir))
    text = render(_describe(target))
    (target / CONTEXT_FILE).write_text(text, encoding="utf-8")
    _out(f"created {target} ({CONTEXT_FILE}: {_tokens(text)})")
    _out(f"next: cd {args.dir} && make test    # or: make run")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    root = _project(args)
    if not (root / "app.py").is_file():
        raise CommandError(f"no app.py in {root}; it should hold: app = create_app()")
    env_file, example = root / ".env", root / ".env.example"
    if not env_file.exists() and example.is_file():
        shutil.copyfile(example, env_file)
        _out("created .env from .env.example")
    from .devserver import serve_dev  # plugins reload in-process; tools restart the server

    return serve_dev(root, host=args.host, port=args.port)


def _stale(committed: str, fresh: str) -> str:
    diff = [
        line
        for line in difflib.unified_diff(
            committed.splitlines(), fresh.splitlines(), "committed", "generated", n=0, lineterm=""
        )
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    added = sum(1 for line in diff if line.startswith("+"))
    shown = [f"  {line[:160]}" for line in diff[:_DIFF_LINES]]
    if len(diff) > _DIFF_LINES:
        shown.append(f"  ... {len(diff) - _DIFF_LINES} more changed lines")
    summary = f"{CONTEXT_FILE} is stale: {added} lines added, {len(diff) - added} removed"
    return "\n".join([summary, *shown, f"run 'microcore context' and commit {CONTEXT_FILE}"])


def cmd_context(args: argparse.Namespace) -> int:
    root = _project(args)
    text = render(_describe(root))
    path = root / CONTEXT_FILE
    if args.check:
        if not path.is_file():
            _err(f"{CONTEXT_FILE} is missing; run 'microcore context' to write it")
            return 1
        committed = path.read_text(encoding="utf-8")
        if committed != text:
            _err(_stale(committed, text))
            return 1
        _out(f"{CONTEXT_FILE} is up to date ({_tokens(text)})")
        return 0
    path.write_text(text, encoding="utf-8")
    _out(f"wrote {CONTEXT_FILE}: {_tokens(text)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    root = _project(args)
    findings, plugins, tools = check_project(root)
    for finding in findings:
        _err(str(finding))
    problems = [f for f in findings if not f.warning]
    if problems:
        _err(f"{len(problems)} problem(s) found")
        return 1
    _out(f"ok: {plugins} plugin files and {tools} tool files follow the rules")
    return 0


def cmd_add_plugin(args: argparse.Namespace) -> int:
    root = _project(args)
    shape = PluginShape(
        route=args.route,
        request=args.request,
        response=args.response,
        subscribe=args.subscribe,
        publishes=tuple(args.publishes),
        respond=args.respond,
    )
    for path, verb in add_plugin(root, args.domain, args.name, shape).items():
        _out(f"{verb} {path.relative_to(root)}")
    return 0


def cmd_tools_upgrade(args: argparse.Namespace) -> int:
    root = _project(args)
    upgrade = upgrade_tools(root, bundle_root(), __version__, dry_run=args.dry_run)
    since = upgrade.old_version or f"unknown (no {LOCK_FILE}: a file that differs counts as edited)"
    would = "would be " if upgrade.dry_run else ""
    _out(f"standard tools: microcore {since} -> {upgrade.new_version}")
    for change in upgrade.changes:
        note = f"  ({change.note})" if change.note else ""
        _out(f"  {change.action:<8}  {change.path}{note}")
        for line in change.diff:
            _out(f"      {line}")
    done = sum(1 for change in upgrade.changes if change.action in ("added", "updated", "removed"))
    _out(f"{done} file(s) {would}added, updated or removed" if done else "no file to update")
    if upgrade.conflicts:
        names = ", ".join(f"{c.path}{NEW_SUFFIX}" for c in upgrade.conflicts)
        _out(f"{len(upgrade.conflicts)} edited file(s) to merge by hand: {names} {would}written")
        _out(f"merge each into the file beside it, then delete the {NEW_SUFFIX} file")
    if not upgrade.dry_run:
        _out(f"wrote {LOCK_FILE} (microcore {upgrade.new_version}); now run: make test")
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    manifest = _describe(_project(args))
    rows = [
        [r.method, r.path, str(r.status_code or ""), r.owner, r.summary or ""]
        for r in manifest.routes
    ]
    _out(_table(["METHOD", "PATH", "STATUS", "OWNER", "SUMMARY"], rows) if rows else "no routes")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    manifest = _describe(_project(args))
    rows = [
        [kind, flow.name, ", ".join(flow.senders) or "-", ", ".join(flow.receivers) or "-"]
        for kind, flows in (("event", manifest.events), ("request", manifest.requests))
        for flow in flows
    ]
    headers = ["KIND", "NAME", "SENT BY", "HANDLED BY"]
    _out(_table(headers, rows) if rows else "no events")
    return 0


# -- parser ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="microcore", description="The microcore command line.")
    parser.add_argument("--version", action="version", version=f"microcore {__version__}")
    project = _Parser(add_help=False)
    project.add_argument("--root", default=".", help="the project folder (default: .)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], text: str) -> _Parser:
        sub = commands.add_parser(name, help=text, description=text, parents=[project])
        sub.set_defaults(run=run)
        return sub

    new = commands.add_parser("new", help="create a runnable project in DIR")
    new.add_argument("dir", metavar="DIR")
    new.set_defaults(run=cmd_new)
    dev = command("dev", cmd_dev, "serve app:app with hot reload (development settings)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    context = command("context", cmd_context, f"write {CONTEXT_FILE} from the running app")
    context.add_argument("--check", action="store_true", help="fail when the file is stale")
    command("check", cmd_check, "check the architecture rules")
    add = commands.add_parser("add", help="add a plugin (microcore add plugin DOMAIN NAME)")
    things = add.add_subparsers(dest="thing", required=True, metavar="WHAT")
    plugin = things.add_parser("plugin", help="a plugin file and its test", parents=[project])
    plugin.add_argument("domain", metavar="DOMAIN")
    plugin.add_argument("name", metavar="NAME")
    plugin.add_argument(
        "--route",
        metavar="'METHOD /path'",
        help="the endpoint, e.g. 'PATCH /products/{product_id:int}' "
        "(default: GET /DOMAIN/NAME unless --subscribe or --respond is given)",
    )
    plugin.add_argument(
        "--request", metavar="MODEL", help="the request model (default NameRequest)"
    )
    plugin.add_argument("--response", metavar="MODEL", help="the response model (NameResponse)")
    plugin.add_argument("--subscribe", metavar="EVENT", help="handle this event (or pattern)")
    plugin.add_argument(
        "--respond",
        metavar="NAME",
        help="answer request/reply NAME (its reply model: --response, or NameReply with --route)",
    )
    plugin.add_argument(
        "--publishes",
        metavar="EVENT",
        action="append",
        default=[],
        help="publish this event after the work (repeatable)",
    )
    plugin.set_defaults(run=cmd_add_plugin)
    tools = commands.add_parser("tools", help="the standard tools (microcore tools upgrade)")
    tool_commands = tools.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade_text = (
        f"bring this microcore's standard tools into the project ({LOCK_FILE} records what "
        f"was shipped; edited files are never overwritten: the new version goes beside them "
        f"as <file>{NEW_SUFFIX})"
    )
    upgrade = tool_commands.add_parser(
        "upgrade", help=upgrade_text, description=upgrade_text, parents=[project]
    )
    upgrade.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    upgrade.set_defaults(run=cmd_tools_upgrade)
    command("routes", cmd_routes, "list the routes the app serves")
    command("events", cmd_events, "list events and request names with who sends and handles them")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - isolation boundary: one line, never a traceback
        ours = isinstance(exc, MicroCoreError | BundleError)
        message = str(exc) if ours else f"{type(exc).__name__}: {exc}"
        _err(f"microcore: error: {message}")
        return 1
