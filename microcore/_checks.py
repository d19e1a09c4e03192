"""Architecture rules (``microcore check``) from a static read of plugin and tool sources.

Nothing is imported or booted, so a broken project can be checked too. The
same scan finds the literal names plugins ``publish`` and ``request`` for the
manifest (AI_CONTEXT.md). Rules:

* a plugin imports no other plugin module, and not the kernel (``microcore.tooling``,
  private ``microcore._*`` modules, ``app``);
* a tool imports no domain;
* no two registrations claim one method and path;
* every name a plugin ``request``s has a responder (something subscribes to it);
* every plugin file holds exactly one plugin class.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec

from ._discovery import find_plugin_files

__all__ = (
    "Call",
    "Finding",
    "SourceScan",
    "check_project",
    "normalize_path",
    "pattern_matches",
    "scan_file",
)

_FIRST_ARGUMENT = {
    "publish": "name",
    "request": "name",
    "subscribe": "pattern",
    "add_endpoint": "path",
    "add_sse": "path",
    "add_websocket": "path",
}
_CALLS = tuple(_FIRST_ARGUMENT)
_ROUTE_METHODS = {"add_endpoint": "", "add_sse": "GET", "add_websocket": "WS"}
_PATH_PARAM = re.compile(r"\{\s*\w+\s*(?::\s*(\w+))?\s*\}")
_KERNEL_MODULES = ("microcore.tooling", "app")


class Call(msgspec.Struct, frozen=True):
    """A call with a literal first argument: ``bus.publish("product.created", ...)``."""

    kind: str  # publish, request, subscribe, add_endpoint, add_sse, add_websocket
    name: str  # the event name or pattern, or the route path
    line: int
    owner: str  # the enclosing class, else the file's plugin class, else the file stem
    method: str = ""  # HTTP method of a route


class Import(msgspec.Struct, frozen=True):
    module: str
    line: int


class SourceScan(msgspec.Struct):
    """What one source file declares, imports and calls."""

    rel: str
    plugin_classes: list[tuple[str, int]] = []
    imports: list[Import] = []
    calls: list[Call] = []
    doc: str | None = None  # the module docstring
    docs: dict[str, str] = {}  # plugin class -> its docstring
    error: str | None = None
    error_line: int = 1


class Finding(msgspec.Struct, frozen=True, order=True):
    """One broken rule, at ``file:line``, with how to fix it."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether event ``name`` matches ``pattern`` (``*``: one token, ``>``: the rest).

    >>> pattern_matches("order.>", "order.paid.late")
    True
    """
    want, got = pattern.split("."), name.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(got) > index
        if index >= len(got) or (token != "*" and token != got[index]):
            return False
    return len(want) == len(got)


def normalize_path(path: str) -> str:
    """A route path with parameter names dropped: ``/a/{id:int}`` and ``/a/{x:int}`` collide."""
    return _PATH_PARAM.sub(lambda m: "{:" + (m.group(1) or "str") + "}", path)


def _module_of(root: Path, path: Path) -> str:
    return ".".join(path.resolve().relative_to(root.resolve()).with_suffix("").parts)


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


class _Scanner(ast.NodeVisitor):
    def __init__(self, scan: SourceScan, module: str) -> None:
        self.scan = scan
        self.package = module.rsplit(".", 1)[0]
        self.plugin_bases = {"microcore.Plugin"}
        self.microcore_aliases: set[str] = set()
        self.current: str | None = None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.scan.imports.append(Import(alias.name, node.lineno))
            if alias.name == "microcore":
                self.microcore_aliases.add(alias.asname or alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            if base == "microcore" and alias.name == "Plugin":
                self.plugin_bases.add(alias.asname or alias.name)
            target = (
                f"{base}.{alias.name}" if not node.module or alias.name.startswith("_") else base
            )
            self.scan.imports.append(Import(target, node.lineno))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = {ast.unparse(b) for b in node.bases}
        aliased = {f"{m}.Plugin" for m in self.microcore_aliases}
        if bases & (self.plugin_bases | aliased) and self.current is None:
            self.scan.plugin_classes.append((node.name, node.lineno))
            self.scan.docs[node.name] = ast.get_docstring(node) or ""
            self.plugin_bases.add(node.name)
        outer, self.current = self.current, self.current or node.name
        self.generic_visit(node)
        self.current = outer

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _CALLS:
            kind = func.attr
            name = _literal(_argument(node, 0, _FIRST_ARGUMENT[kind]))
            method = _ROUTE_METHODS.get(kind, "")
            if kind == "add_endpoint":
                method = (_literal(_argument(node, 1, "method")) or "").upper()
            routes = kind in _ROUTE_METHODS
            if name is not None and (method or not routes):
                self.scan.calls.append(Call(kind, name, node.lineno, self.current or "", method))
        self.generic_visit(node)


def scan_file(root: Path, path: Path) -> SourceScan:
    """Read one file: its plugin classes, imports and literal bus/route calls."""
    rel = str(path.resolve().relative_to(root.resolve()))
    scan = SourceScan(rel)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    except SyntaxError as exc:
        scan.error = f"cannot be parsed: {exc.msg}; fix the syntax error"
        scan.error_line = exc.lineno or 1
        return scan
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        scan.error = f"cannot be read: {exc}"
        return scan
    scan.doc = ast.get_docstring(tree)
    _Scanner(scan, _module_of(root, path)).visit(tree)
    fallback = scan.plugin_classes[0][0] if scan.plugin_classes else path.stem
    scan.calls = [c if c.owner else msgspec.structs.replace(c, owner=fallback) for c in scan.calls]
    return scan


def _is_plugin_module(module: str) -> bool:
    parts = module.split(".")
    return len(parts) >= 3 and parts[0] == "domains" and parts[2] == "plugins"


def _is_kernel_module(module: str) -> bool:
    return module in _KERNEL_MODULES or module.startswith("microcore._")


def _plugin_rules(scan: SourceScan) -> list[Finding]:
    found: list[Finding] = []
    for imp in scan.imports:
        if _is_plugin_module(imp.module):
            found.append(
                Finding(
                    scan.rel,
                    imp.line,
                    f"plugin imports another plugin module {imp.module!r}; plugins never "
                    "import each other: publish an event or request a reply on the event bus, "
                    "and move shared code to the domain (e.g. domains/<domain>/models.py)",
                )
            )
        elif _is_kernel_module(imp.module):
            found.append(
                Finding(
                    scan.rel,
                    imp.line,
                    f"plugin imports the kernel ({imp.module!r}); plugins receive tools by "
                    "naming them in __init__ and import only the public 'microcore' API "
                    "(Plugin, Event, errors)",
                )
            )
    classes = scan.plugin_classes
    if not classes:
        found.append(
            Finding(
                scan.rel,
                1,
                "plugin file holds no plugin class; define one, e.g. "
                "'class CreateOrderPlugin(Plugin):' (from microcore import Plugin)",
            )
        )
    for name, line in classes[1:]:
        found.append(
            Finding(
                scan.rel,
                line,
                f"plugin file holds {len(classes)} plugin classes "
                f"({', '.join(n for n, _ in classes)}); one file = one feature: "
                f"move {name} to its own *_plugin.py file",
            )
        )
    return found


def _tool_rules(scan: SourceScan) -> list[Finding]:
    return [
        Finding(
            scan.rel,
            imp.line,
            f"tool imports a domain ({imp.module!r}); tools are infrastructure and know no "
            "business: let plugins register what the tool needs (routes, handlers, settings)",
        )
        for imp in scan.imports
        if imp.module == "domains" or imp.module.startswith("domains.")
    ]


def _route_rules(scans: list[SourceScan]) -> list[Finding]:
    found: list[Finding] = []
    seen: dict[tuple[str, str], tuple[SourceScan, Call]] = {}
    for scan in scans:
        for call in scan.calls:
            if not call.method:
                continue
            key = (call.method, normalize_path(call.name))
            first = seen.setdefault(key, (scan, call))
            if first[1] is call:
                continue
            other_scan, other = first
            found.append(
                Finding(
                    scan.rel,
                    call.line,
                    f"route {call.method} {call.name} collides with {other.method} {other.name} "
                    f"of {other.owner} ({other_scan.rel}:{other.line}); change one path or "
                    "method (parameter names do not make paths different)",
                )
            )
    return found


def _request_rules(scans: list[SourceScan]) -> list[Finding]:
    patterns = [c.name for s in scans for c in s.calls if c.kind == "subscribe"]
    return [
        Finding(
            scan.rel,
            call.line,
            f"request {call.name!r} has no responder: nothing subscribes to it; add a plugin "
            f"that does 'await self.bus.subscribe({call.name!r}, self.on_request)' and "
            "returns the reply",
        )
        for scan in scans
        for call in scan.calls
        if call.kind == "request" and not any(pattern_matches(p, call.name) for p in patterns)
    ]


def check_project(root: Path) -> tuple[list[Finding], int, int]:
    """Every finding in the project at ``root``, sorted; plus how many plugin and tool files."""
    plugin_files = find_plugin_files(root)
    tool_files = sorted(p for p in root.glob("tools/**/*.py") if "__pycache__" not in p.parts)
    plugins = [scan_file(root, p) for p in plugin_files]
    tools = [scan_file(root, p) for p in tool_files]
    found: list[Finding] = []
    for scan in plugins + tools:
        if scan.error is not None:
            found.append(Finding(scan.rel, scan.error_line, scan.error))
    for scan in plugins:
        if scan.error is None:
            found.extend(_plugin_rules(scan))
    for scan in tools:
        found.extend(_tool_rules(scan))
    found.extend(_route_rules(tools + plugins))
    found.extend(_request_rules(plugins + tools))
    return sorted(found), len(plugin_files), len(tool_files)
