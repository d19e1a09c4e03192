"""Architecture rules (``microcore check``) from a static read of the project's sources.

Nothing is imported or booted, so a broken project can be checked too. The
same scan finds the literal names plugins ``publish`` and ``request`` for the
manifest (AI_CONTEXT.md). Rules:

* a plugin, and any other module of a domain, imports no plugin module and not the
  kernel (``microcore.tooling``, private ``microcore._*`` modules, ``app``);
* a tool imports no domain;
* no two registrations claim one method and path, nor a route a tool reserves
  (a tool class lists what it serves in ``reserved_routes = ("GET /docs", ...)``);
* every name a plugin ``request``s has a responder (something subscribes to it);
* every plugin file holds exactly one plugin class: a subclass of ``microcore.Plugin``,
  directly or through a base class in the domain's own modules.

A ``publish``, ``request`` or ``subscribe`` call counts when it is made on the event
bus: a name or attribute ending in ``bus`` (``self.bus``, ``event_bus``, ``self._bus``)
or one assigned from such (``self.events = event_bus``). ``client.request("GET", url)``
is not.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec

from .._core.discovery import find_plugin_files
from .._core.names import matches

__all__ = (
    "Call",
    "Finding",
    "SourceScan",
    "check_project",
    "normalize_path",
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
_BUS_NAME = re.compile(r"_*(?:\w*_)?bus")  # bus, _bus, event_bus
_RESERVED = "reserved_routes"
_RESERVED_ROUTE = re.compile(r"([A-Z]+) (/\S*)")  # "GET /docs"
_PLUGIN = "microcore.Plugin"


class Call(msgspec.Struct, frozen=True):
    """A call with a literal first argument: ``bus.publish("product.created", ...)``."""

    kind: str  # publish, request, subscribe, add_endpoint, add_sse, add_websocket, reserved
    name: str  # the event name or pattern, or the route path
    line: int
    owner: str  # the plugin class it belongs to; outside plugin files the class, else file stem
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


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` reads, relative imports resolved against ``package``."""
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, base] if base else parts)
    return base


class _Module:
    """One module's names: what its imports and module-level classes bind, qualified."""

    def __init__(self, tree: ast.Module, name: str, package: str) -> None:
        self.name = name
        self.package = package
        self.names: dict[str, str] = {}  # local name -> qualified name
        self.classes: dict[str, list[ast.expr]] = {}  # module-level class -> its bases
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    self.names[bound] = alias.name if alias.asname else bound
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, package)
                for alias in node.names:
                    self.names[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                self.names[node.name] = f"{name}.{node.name}"
                self.classes[node.name] = node.bases

    def qualify(self, node: ast.expr) -> str | None:
        """``Plugin`` -> ``microcore.Plugin``, ``mc.Plugin`` -> ``microcore.Plugin``."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            value = self.qualify(node.value)
            return None if value is None else f"{value}.{node.attr}"
        return None


class _PluginClasses:
    """Which classes are plugin classes, following bases through the domains' modules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, _Module | None] = {}

    def module(self, name: str) -> _Module | None:
        if name not in self.modules:
            self.modules[name] = self._read(name)
        return self.modules[name]

    def _read(self, name: str) -> _Module | None:
        base = self.root.joinpath(*name.split("."))
        for path, package in (
            (base.with_suffix(".py"), name.rpartition(".")[0]),
            (base / "__init__.py", name),
        ):
            if path.is_file():
                try:
                    return _Module(ast.parse(path.read_bytes()), name, package)
                except (OSError, SyntaxError, ValueError):
                    return None  # its own scan reports it
        return None

    def is_plugin(self, qualified: str | None, seen: frozenset[str] = frozenset()) -> bool:
        """Whether the class named ``qualified`` (``domains.shop.base.ShopPlugin``) is one."""
        if qualified == _PLUGIN:
            return True
        if qualified is None or qualified in seen or not qualified.startswith("domains."):
            return False
        name, _, attr = qualified.rpartition(".")
        module = self.module(name)
        if module is None:
            return False
        seen |= {qualified}
        if attr in module.classes:
            return any(self.is_plugin(module.qualify(b), seen) for b in module.classes[attr])
        return self.is_plugin(module.names.get(attr), seen)  # re-exported from elsewhere


def _pairs(target: ast.expr, value: ast.expr) -> list[tuple[str, str]]:
    """(target, value) texts of an assignment, tuples unpacked: ``a, b = x, y``."""
    if (
        isinstance(target, ast.Tuple)
        and isinstance(value, ast.Tuple)
        and len(target.elts) == len(value.elts)
    ):
        return [p for t, v in zip(target.elts, value.elts, strict=True) for p in _pairs(t, v)]
    return [(ast.unparse(target), ast.unparse(value))]


def _is_bus(text: str, aliases: set[str]) -> bool:
    return text in aliases or _BUS_NAME.fullmatch(text.rpartition(".")[2]) is not None


def _bus_aliases(tree: ast.Module) -> set[str]:
    """Names and attributes assigned from the bus: ``self.events = event_bus``."""
    pairs: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for each in node.targets:
                pairs += _pairs(each, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs += _pairs(node.target, node.value)
    aliases: set[str] = set()
    grew = True
    while grew:
        grew = False
        for target, value in pairs:
            if target not in aliases and _is_bus(value, aliases):
                aliases.add(target)
                grew = True
    return aliases


def _reserved_routes(node: ast.ClassDef) -> list[Call]:
    """The routes a class declares it serves: ``reserved_routes = ("GET /docs", ...)``."""
    calls: list[Call] = []
    for stmt in node.body:
        targets: list[ast.expr]
        value: ast.expr | None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == _RESERVED for t in targets):
            continue
        for item in value.elts if isinstance(value, (ast.Tuple, ast.List)) else ():
            found = _RESERVED_ROUTE.fullmatch(_literal(item) or "")
            if found:
                calls.append(Call("reserved", found[2], item.lineno, node.name, found[1]))
    return calls


class _Scanner(ast.NodeVisitor):
    def __init__(self, scan: SourceScan, module: _Module, plugins: _PluginClasses) -> None:
        self.scan = scan
        self.module = module
        self.plugins = plugins
        self.buses: set[str] = set()
        self.depth = 0  # classes and functions around the node
        self.plugin: str | None = None  # the enclosing plugin class
        self.klass: str | None = None  # the enclosing class

    def visit_Module(self, node: ast.Module) -> None:
        self.buses = _bus_aliases(node)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.scan.imports.append(Import(alias.name, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(node, self.module.package)
        for alias in node.names:
            self.scan.imports.append(Import(f"{base}.{alias.name}", node.lineno))

    def _nested(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._nested(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        plugin = self.depth == 0 and any(
            self.plugins.is_plugin(self.module.qualify(b)) for b in node.bases
        )
        if plugin:
            self.scan.plugin_classes.append((node.name, node.lineno))
            self.scan.docs[node.name] = ast.get_docstring(node) or ""
        self.scan.calls += _reserved_routes(node)
        outer = self.plugin, self.klass
        self.plugin, self.klass = (node.name if plugin else self.plugin), node.name
        self._nested(node)
        self.plugin, self.klass = outer

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _CALLS:
            kind = func.attr
            name = _literal(_argument(node, 0, _FIRST_ARGUMENT[kind]))
            method = _ROUTE_METHODS.get(kind, "")
            if kind == "add_endpoint":
                method = (_literal(_argument(node, 1, "method")) or "").upper()
            routes = kind in _ROUTE_METHODS
            on_bus = routes or _is_bus(ast.unparse(func.value), self.buses)
            if name is not None and on_bus and (method or not routes):
                owner = self.plugin or self.klass or ""
                self.scan.calls.append(Call(kind, name, node.lineno, owner, method))
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
    name = _module_of(root, path)
    module = _Module(tree, name, name.rpartition(".")[0])
    plugins = _PluginClasses(root.resolve())
    plugins.modules[name] = module
    _Scanner(scan, module, plugins).visit(tree)
    classes = [n for n, _ in scan.plugin_classes]
    scan.calls = [
        msgspec.structs.replace(c, owner=_owner(c.owner, classes, path.stem)) for c in scan.calls
    ]
    return scan


def _owner(owner: str, plugin_classes: list[str], stem: str) -> str:
    """In a plugin file everything belongs to a plugin class (helpers to the file's plugin)."""
    if plugin_classes:
        return owner if owner in plugin_classes else plugin_classes[0]
    return owner or stem


def _plugin_module(name: str) -> str | None:
    """The plugin module an imported name lies in: ``domains.<domain>.plugins.<file>``."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "domains" and parts[2] == "plugins":
        return ".".join(parts[:4])
    return None


def _kernel_module(name: str) -> str | None:
    """The kernel module an imported name lies in: ``microcore.tooling``, ``microcore._*``,
    ``app``."""
    parts = name.split(".")
    if parts[0] == "app":
        return "app"
    if (
        parts[0] == "microcore"
        and len(parts) > 1
        and (parts[1] == "tooling" or parts[1].startswith("_"))
    ):
        return ".".join(parts[:2])
    return None


def _import_rules(scan: SourceScan, *, plugin: bool) -> list[Finding]:
    """Plugins, and the domain modules they import, reach no plugin module and not the kernel."""
    who = "plugin" if plugin else "domain module"
    found: list[Finding] = []
    for imp in scan.imports:
        if (module := _plugin_module(imp.module)) is not None:
            found.append(
                Finding(
                    scan.rel,
                    imp.line,
                    f"{who} imports {'another' if plugin else 'a'} plugin module {module!r}; "
                    "plugins never import each other: publish an event or request a reply on "
                    "the event bus, and move shared code to the domain "
                    "(e.g. domains/<domain>/models.py)",
                )
            )
        elif (module := _kernel_module(imp.module)) is not None:
            found.append(
                Finding(
                    scan.rel,
                    imp.line,
                    f"{who} imports the kernel ({module!r}); plugins receive tools by "
                    "naming them in __init__ and import only the public 'microcore' API "
                    "(Plugin, Event, errors)",
                )
            )
    return found


def _plugin_rules(scan: SourceScan) -> list[Finding]:
    found = _import_rules(scan, plugin=True)
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
        if call.kind == "request" and not any(matches(p, call.name) for p in patterns)
    ]


def _sources(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if "__pycache__" not in p.parts)


def check_project(root: Path) -> tuple[list[Finding], int, int]:
    """Every finding in the project at ``root``, sorted; plus how many plugin and tool files."""
    plugin_files = find_plugin_files(root)
    tool_files = _sources(root, "tools/**/*.py")
    domain_files = [p for p in _sources(root, "domains/**/*.py") if p not in set(plugin_files)]
    plugins = [scan_file(root, p) for p in plugin_files]
    tools = [scan_file(root, p) for p in tool_files]
    modules = [scan_file(root, p) for p in domain_files]
    found: list[Finding] = []
    for scan in plugins + tools + modules:
        if scan.error is not None:
            found.append(Finding(scan.rel, scan.error_line, scan.error))
    for scan in plugins:
        if scan.error is None:
            found.extend(_plugin_rules(scan))
    for scan in modules:
        found.extend(_import_rules(scan, plugin=False))
    for scan in tools:
        found.extend(_tool_rules(scan))
    found.extend(_route_rules(tools + plugins + modules))
    found.extend(_request_rules(plugins + modules + tools))
    return sorted(found), len(plugin_files), len(tool_files)
