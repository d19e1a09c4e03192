"""Architecture rules (``microcore check``) from a static read of the project's sources.

Plugins and domain modules are read, never imported or booted, so a broken project can be
checked too; tool classes are imported (not set up) for their ``reserved_routes``. The
same scan finds the literal names plugins ``publish`` and ``request`` for the
manifest (AI_CONTEXT.md). Rules:

* a plugin, and any other module of a domain, imports no plugin module and not the
  kernel (``microcore.tooling``, private ``microcore._*`` modules, ``app``); from a tool
  it imports only the public types of the tool's package (``from tools.http import Http``),
  never a private module (``tools.http._app``, ``tools.http.http_tool``);
* a tool imports no domain;
* no two registrations claim one method and path, nor a route a tool reserves
  (a tool class lists what it serves in ``reserved_routes = ("GET /docs", ...)``, read from
  the imported class);
* every name a plugin ``request``s has a responder (something subscribes to it);
  a plugin in another language counts with what its ``*.sidecar.toml`` declares
  (``routes``, ``responds``, ``subscribes``, ``requests``);
* every plugin file holds exactly one plugin class: a subclass of ``microcore.Plugin``,
  directly or through a base class in the domain's own modules.

A ``publish``, ``request`` or ``subscribe`` call counts when it is made on the event
bus: a name or attribute ending in ``bus`` (``self.bus``, ``event_bus``, ``self._bus``)
or one assigned from such (``self.events = event_bus``). ``client.request("GET", url)``
is not.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import msgspec

from .._core.discovery import classes_in, find_plugin_files, find_tool_files, import_file
from .._core.tool import Tool
from .._names import matches
from .scan import Call, SourceScan, find_declarations, scan_file

__all__ = ("Finding", "check_project", "normalize_path", "reserved_routes")

_RESERVED_ROUTE = re.compile(r"([A-Z]+) (/\S*)")  # "GET /docs"
_PATH_PARAM = re.compile(r"\{\s*\w+\s*(?::\s*(\w+))?\s*\}")


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


def _private_tool_module(name: str) -> str | None:
    """The private tool module an imported name reaches: ``tools.<tool>._x`` (public types
    come from the tool's package, ``from tools.http import Http``)."""
    parts = name.split(".")
    if parts[0] != "tools" or len(parts) < 3:
        return None
    for index, part in enumerate(parts[2:], start=2):
        if part.startswith("_") or part.endswith("_tool"):
            return ".".join(parts[: index + 1])
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
        elif (module := _private_tool_module(imp.module)) is not None:
            tool = module.split(".")[1]
            found.append(
                Finding(
                    scan.rel,
                    imp.line,
                    f"{who} imports {module!r}, a private module of the {tool} tool; import "
                    f"the tool's public types from its package instead, e.g. "
                    f"'from tools.{tool} import ...'",
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
    patterns = [c.name for s in scans for c in s.calls if c.kind in ("subscribe", "respond")]
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


def reserved_routes(root: Path) -> tuple[list[SourceScan], list[Finding]]:
    """The routes each tool class declares it serves itself (``Tool.reserved_routes``), read
    from the imported class (tools load without booting), as scans of its file."""
    scans: list[SourceScan] = []
    found: list[Finding] = []
    for path in find_tool_files(root):
        rel = str(path.resolve().relative_to(root.resolve()))
        try:
            module = import_file(root, path)
        except Exception as exc:  # noqa: BLE001 - isolation boundary: one tool file
            found.append(
                Finding(
                    rel,
                    1,
                    f"tool file cannot be imported ({type(exc).__name__}: {exc}); microcore "
                    "check reads each tool's reserved_routes from its class: fix the import",
                )
            )
            continue
        scan = SourceScan(rel)
        for cls in classes_in(module, Tool):
            line = _line_of(cls, "reserved_routes")
            for item in cls.reserved_routes:
                match = _RESERVED_ROUTE.fullmatch(item) if isinstance(item, str) else None
                if match is None:
                    found.append(
                        Finding(
                            rel,
                            line,
                            f"{cls.__name__}.reserved_routes holds {item!r}; list each route as "
                            "'METHOD /path', e.g. 'GET /docs'",
                        )
                    )
                    continue
                scan.calls.append(Call("reserved", match[2], line, cls.__name__, match[1]))
        scans.append(scan)
    return scans, found


def _line_of(cls: type, attribute: str) -> int:
    """The line of ``cls`` that names ``attribute`` (else the class line)."""
    lines, start = inspect.getsourcelines(cls)
    offset = next((i for i, text in enumerate(lines) if attribute in text), 0)
    return int(start) + offset


def check_project(root: Path) -> tuple[list[Finding], int, int]:
    """Every finding in the project at ``root``, sorted; plus how many plugin and tool files."""
    plugin_files = find_plugin_files(root)
    tool_files = _sources(root, "tools/**/*.py")
    domain_files = [p for p in _sources(root, "domains/**/*.py") if p not in set(plugin_files)]
    plugins = [scan_file(root, p) for p in plugin_files]
    tools = [scan_file(root, p) for p in tool_files]
    modules = [scan_file(root, p) for p in domain_files]
    declared = [scan_file(root, p) for p in find_declarations(root)]  # other languages
    found: list[Finding] = []
    for scan in plugins + tools + modules + declared:
        if scan.error is not None:
            found.append(Finding(scan.rel, scan.error_line, scan.error))
    for scan in plugins:
        if scan.error is None:
            found.extend(_plugin_rules(scan))
    for scan in modules:
        found.extend(_import_rules(scan, plugin=False))
    for scan in tools:
        found.extend(_tool_rules(scan))
    reserved, problems = reserved_routes(root)
    found.extend(problems)
    found.extend(_route_rules(reserved + tools + plugins + modules + declared))
    found.extend(_request_rules(plugins + modules + tools + declared))
    return sorted(found), len(plugin_files), len(tool_files)
