"""One static read of a project's source files: what each declares, imports and calls.

Nothing is imported or booted, so a broken project can be read too. ``microcore
check``, the manifest (AI_CONTEXT.md), the system tool's graph and hot reload's
dependency tracking all read files through :func:`scan_file`.

A ``publish``, ``request`` or ``subscribe`` call counts when it is made on the event
bus: a name or attribute ending in ``bus`` (``self.bus``, ``event_bus``, ``self._bus``)
or one assigned from such (``self.events = event_bus``). ``client.request("GET", url)``
is not. Route registrations (``add_endpoint``, ``add_sse``, ``add_websocket``) are read
too (a tool's own routes come from its class's ``reserved_routes``, see ``checks.py``).

A plugin written in another language declares the same facts in its declaration file,
``domains/<domain>/plugins/<name>.sidecar.toml`` (a ``[declares]`` table: ``routes``,
``subscribes``, ``responds``, ``publishes``, ``requests``); :func:`scan_file` reads one
into the same :class:`SourceScan`, owned by ``<name>``.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import msgspec

__all__ = (
    "DECLARATION_SUFFIX",
    "Call",
    "Import",
    "SourceScan",
    "find_declarations",
    "module_of",
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
_BUS_NAME = re.compile(r"_*(?:\w*_)?bus")  # bus, _bus, event_bus
_PLUGIN = "microcore.Plugin"
DECLARATION_SUFFIX = ".sidecar.toml"
_DECLARED = {  # [declares] key -> the call kind it stands for
    "routes": "add_endpoint",
    "subscribes": "subscribe",
    "responds": "respond",
    "publishes": "publish",
    "requests": "request",
}
_DECLARED_ROUTE = re.compile(r"([A-Z]+) (/\S*)")


class Call(msgspec.Struct, frozen=True):
    """A call with a literal first argument: ``bus.publish("product.created", ...)``."""

    kind: str  # publish, request, subscribe, add_endpoint, add_sse, add_websocket, reserved,
    # respond (declared by a sidecar)
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


def module_of(root: Path, path: Path) -> str:
    """``domains/a/plugins/x_plugin.py`` -> ``domains.a.plugins.x_plugin``."""
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


def find_declarations(root: Path) -> list[Path]:
    """Every ``domains/*/plugins/*.sidecar.toml``, sorted."""
    return sorted(root.glob(f"domains/*/plugins/*{DECLARATION_SUFFIX}"))


def _scan_declaration(path: Path, scan: SourceScan) -> SourceScan:
    owner = path.name.removesuffix(DECLARATION_SUFFIX)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        scan.error = f"cannot be read: {exc}"
        return scan
    declares = data.get("declares", {})
    doc = data.get("doc")
    scan.doc = doc if isinstance(doc, str) else None
    scan.plugin_classes = [(owner, 1)]
    if not isinstance(declares, dict) or set(declares) - set(_DECLARED):
        scan.error = f"[declares] may only hold lists named {', '.join(_DECLARED)}"
        return scan
    for key, kind in _DECLARED.items():
        names = declares.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            scan.error = f"declares.{key} must be a list of strings, got {names!r}"
            return scan
        for name in names:
            line = next((i for i, t in enumerate(text.splitlines(), 1) if f'"{name}"' in t), 1)
            method = ""
            if kind == "add_endpoint":
                route = _DECLARED_ROUTE.fullmatch(name)
                if route is None:
                    scan.error = f"declares.routes holds {name!r}; write 'METHOD /path'"
                    scan.error_line = line
                    return scan
                method, name = route[1], route[2]
            scan.calls.append(Call(kind, name, line, owner, method))
    return scan


def scan_file(root: Path, path: Path) -> SourceScan:
    """Read one file: its plugin classes, imports and literal bus/route calls (or what a
    ``*.sidecar.toml`` declares)."""
    rel = str(path.resolve().relative_to(root.resolve()))
    scan = SourceScan(rel)
    if path.name.endswith(DECLARATION_SUFFIX):
        return _scan_declaration(path, scan)
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
    name = module_of(root, path)
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
