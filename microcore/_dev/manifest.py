"""AI_CONTEXT.md: the whole running system on one page, for a coding assistant or a newcomer.

Everything comes from the live kernel and from introspection, never from
hand-written descriptions: tools' public methods (signature and first
docstring paragraph; for a tool whose ``bind`` hands plugins a handle, the
handle's), plugins with their injected tools and registrations, endpoints with
compact schemas (from ``msgspec.json.schema``), events with their publishers
(a static scan of plugin source) and subscribers, request/reply names, domain
models and tables from migrations. Output is sorted and free of timestamps and
absolute paths, so it diffs cleanly and ``microcore context --check`` works.

>>> text = await generate(Path("."))          # boots the app with in-memory settings
"""

from __future__ import annotations

import re
import sys
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from .._contracts import RouteKind, ServesRoutes
from .._core.discovery import ErrorInfo
from .._core.kernel import Kernel
from .._core.status import relative
from .._core.tool import Tool
from .._names import matches
from ..events import Contract, DeclaresContracts
from .introspect import Method, compact_schema, first_paragraph, public_members, signature_of
from .scan import DECLARATION_SUFFIX, find_declarations, scan_file
from .typeref import TypeInfo, define_types, exported_types, tool_packages

__all__ = (
    "BOOT_SETTINGS",
    "CONTEXT_FILE",
    "Manifest",
    "compact_schema",
    "describe",
    "describe_project",
    "generate",
    "render",
    "signature_of",
)

BOOT_SETTINGS: Mapping[str, str] = {
    "MICROCORE_ENV": "development",
    "MICROCORE_RELOAD": "0",
    "DATABASE_URL": "sqlite://:memory:",
    "EVENT_BUS_URL": "memory://",
    "STATE_URL": "memory://",
}
"""Settings for booting a project to look at it (and for tests): nothing touches disk or network."""

_SUBSCRIPTION_KINDS = ("subscription", "responder")


CONTEXT_FILE = "AI_CONTEXT.md"


class ToolInfo(msgspec.Struct, frozen=True):
    name: str
    doc: str
    methods: list[Method]
    error: str | None = None
    type_name: str = ""  # what a plugin annotates its parameter with, e.g. Http
    module: str = ""  # where that type is imported from, e.g. tools.http


class PluginInfo(msgspec.Struct, frozen=True):
    identity: str
    domain: str
    name: str
    file: str
    doc: str
    tools: list[str]
    registrations: dict[str, list[str]]
    publishes: list[str]
    requests: list[str]
    error: str | None = None
    payloads: dict[str, str] = {}  # published/requested name -> qualified payload class
    replies: dict[str, str] = {}  # requested name -> qualified class of ``reply=``


class Route(msgspec.Struct, frozen=True):
    method: str
    path: str
    owner: str
    kind: str = "route"
    status_code: int | None = None
    summary: str | None = None
    request: str | None = None
    response: str | None = None


class Flow(msgspec.Struct, frozen=True):
    """An event (publishers -> subscribers) or a request name (requesters -> responders)."""

    name: str
    senders: list[str]
    receivers: list[str]
    payload: str = ""  # its shape, when a publisher or a handler declares it
    reply: str = ""  # a request's reply shape


class Table(msgspec.Struct):
    name: str
    file: str
    columns: list[str]


class Manifest(msgspec.Struct):
    project: str
    tools: list[ToolInfo]
    plugins: list[PluginInfo]
    models: dict[str, list[str]]
    routes: list[Route]
    events: list[Flow]
    requests: list[Flow]
    tables: list[Table]
    types: list[TypeInfo] = []


def _surface(tool: Tool) -> type:
    """What plugins receive: the type ``bind`` declares it returns (the tool itself when
    ``bind`` is not overridden or declares no class)."""
    bind = type(tool).bind
    if bind is Tool.bind:
        return type(tool)
    try:
        declared = typing.get_type_hints(bind).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation documents the tool itself
        declared = None
    return declared if isinstance(declared, type) else type(tool)


# -- describing the live system -----------------------------------------------------------


def _error_text(kernel: Kernel, error: ErrorInfo | None) -> str | None:
    if error is None:
        return None
    where = relative(kernel.root, error.file)
    prefix = f"{where}:{error.line}: " if where and error.line else ""
    return f"{prefix}{error.type}: {error.message}".replace(str(kernel.root) + "/", "")


def _tools(kernel: Kernel, exported: Mapping[str, tuple[str, Any]]) -> list[ToolInfo]:
    infos: list[ToolInfo] = []
    for name, record in sorted(kernel.tools.items()):
        if record.instance is None or record.status != "ok":
            infos.append(ToolInfo(name, "", [], _error_text(kernel, record.error)))
            continue
        surface = _surface(record.instance)
        skip = vars(Tool) if issubclass(surface, Tool) else ()
        doc = first_paragraph(vars(surface).get("__doc__") or type(record.instance).__doc__)
        module, obj = exported.get(surface.__name__, ("", None))
        typed = obj is surface and module == f"tools.{name}"
        infos.append(
            ToolInfo(
                name,
                doc,
                public_members(surface, skip=skip),
                type_name=surface.__name__ if typed else "",
                module=module if typed else "",
            )
        )
    return infos


def _plugins(kernel: Kernel) -> list[PluginInfo]:
    infos: list[PluginInfo] = []
    for identity, record in sorted(kernel.plugins.items()):
        name = identity.split(".", 1)[1]
        scan = scan_file(kernel.root, record.file)
        calls = [c for c in scan.calls if c.owner == name]
        registrations: dict[str, list[str]] = {}
        for reg in record.owner.registrations:
            registrations.setdefault(reg.kind, []).append(reg.label)
        infos.append(
            PluginInfo(
                identity=identity,
                domain=record.domain,
                name=name,
                file=scan.rel,
                doc=first_paragraph(scan.docs.get(name) or scan.doc),
                tools=list(record.tools),
                registrations={k: sorted(v) for k, v in sorted(registrations.items())},
                publishes=sorted({c.name for c in calls if c.kind == "publish"}),
                requests=sorted({c.name for c in calls if c.kind == "request"}),
                error=_error_text(kernel, record.error),
                payloads={c.name: c.model for c in calls if c.model},
                replies={c.name: c.reply for c in calls if c.reply},
            )
        )
    return infos


def _declared(root: Path) -> list[PluginInfo]:
    """Plugins in other languages, from their ``*.sidecar.toml`` declarations (never from the
    running programs, so the manifest does not depend on them starting)."""
    infos: list[PluginInfo] = []
    for path in find_declarations(root):
        scan = scan_file(root, path)
        domain, name = path.parent.parent.name, path.name.removesuffix(DECLARATION_SUFFIX)
        registrations: dict[str, list[str]] = {}
        kinds = {"add_endpoint": "route", "subscribe": "subscription", "respond": "responder"}
        for call in scan.calls:
            if call.kind in kinds:
                label = f"{call.method} {call.name}" if call.method else call.name
                registrations.setdefault(kinds[call.kind], []).append(label)
        infos.append(
            PluginInfo(
                identity=f"{domain}.{name}",
                domain=domain,
                name=name,
                file=scan.rel,
                doc=first_paragraph(scan.doc),
                tools=["sidecar"],
                registrations={k: sorted(v) for k, v in sorted(registrations.items())},
                publishes=sorted({c.name for c in scan.calls if c.kind == "publish"}),
                requests=sorted({c.name for c in scan.calls if c.kind == "request"}),
                error=scan.error,
            )
        )
    return infos


def _routes(kernel: Kernel, declared: Iterable[PluginInfo] = ()) -> list[Route]:
    """Rows of every tool that serves routes (the :class:`ServesRoutes` contract, e.g. http),
    and the routes plugins in other languages declare."""
    routes: list[Route] = []
    for plugin in declared:
        for label in plugin.registrations.get("route", ()):
            method, path = label.split(" ", 1)
            routes.append(Route(method=method, path=path, owner=plugin.identity))
    for _, record in sorted(kernel.tools.items()):
        tool = record.instance if record.status == "ok" else None
        if not isinstance(tool, ServesRoutes):
            continue
        for row in tool.routes():
            if not row.path or row.kind == RouteKind.MIDDLEWARE:
                continue
            request, response = row.request_model, row.response_model
            routes.append(
                Route(
                    method=row.method or ("WS" if row.kind == RouteKind.WEBSOCKET else "GET"),
                    path=row.path,
                    owner=row.owner,
                    kind=row.kind.value,
                    status_code=row.status_code,
                    summary=row.summary,
                    request=None if request is None else compact_schema(request),
                    response=None if response is None else compact_schema(response),
                )
            )
    # a declared row wins over the running program's: the same text whether it runs or not
    unique = {(r.path, r.method, r.owner): r for r in reversed(routes)}
    return [unique[key] for key in sorted(unique)]


def _contracts(kernel: Kernel, plugins: list[PluginInfo]) -> list[Contract]:
    """What the bus reports its handlers declare; without such a bus, the registrations."""
    for _, record in sorted(kernel.tools.items()):
        if record.status == "ok" and isinstance(record.instance, DeclaresContracts):
            return record.instance.contracts()
    return [
        Contract(kind=kind, pattern=pattern, owner=plugin.identity)
        for plugin in plugins
        for kind in _SUBSCRIPTION_KINDS
        for pattern in plugin.registrations.get(kind, ())
    ]


def _resolve(qualified: str) -> Any:
    """The class a scan's qualified name (``domains.shop.models.Order``) names, if imported."""
    module, _, attr = qualified.rpartition(".")
    found = getattr(sys.modules.get(module), attr, None)
    return found if isinstance(found, type) else None


def _shape(tp: Any, qualified: str = "") -> str:
    if tp is None:
        tp = _resolve(qualified) if qualified else None
        if tp is None:
            return qualified.rpartition(".")[2]
    return compact_schema(tp)


def _wildcard(pattern: str) -> bool:
    return "*" in pattern or ">" in pattern


def _flows(plugins: list[PluginInfo], contracts: list[Contract]) -> tuple[list[Flow], list[Flow]]:
    published: dict[str, set[str]] = {}
    requested: dict[str, set[str]] = {}
    payloads: dict[str, str] = {}
    replies: dict[str, str] = {}
    for plugin in plugins:
        for name in plugin.publishes:
            published.setdefault(name, set()).add(plugin.identity)
        for name in plugin.requests:
            requested.setdefault(name, set()).add(plugin.identity)
        payloads.update(plugin.payloads)
        replies.update(plugin.replies)

    def receivers(name: str, request: bool) -> tuple[list[str], Contract | None]:
        found: set[str] = set()
        typed: Contract | None = None
        for c in contracts:
            if (c.kind == "broadcast" if request else c.kind == "responder") or not (
                c.pattern == name or matches(c.pattern, name)
            ):
                continue
            notes = [] if c.pattern == name else [f"via {c.pattern}"]
            notes += [f"retries {c.retries}"] if c.retries else []
            notes += ["broadcast"] if c.kind == "broadcast" else []
            found.add(c.owner + (f" ({', '.join(notes)})" if notes else ""))
            if c.payload is not None or c.reply is not None:
                typed = c if typed is None or c.kind == "responder" else typed
        return sorted(found), typed

    def flow(name: str, senders: set[str], request: bool) -> Flow:
        who, typed = receivers(name, request)
        declared = typed.payload if typed is not None else None  # a responder's is the contract
        if declared is not None and (request or name not in payloads):
            payload = _shape(declared)
        else:
            payload = _shape(None, payloads[name]) if name in payloads else ""
        reply = ""
        if request:
            if typed is not None and typed.reply is not None:
                reply = _shape(typed.reply)
            elif name in replies:
                reply = _shape(None, replies[name])
        return Flow(name, sorted(senders), who, payload, reply)

    answered = {  # a sidecar may declare a pattern: its matches are listed, not the pattern
        c.pattern for c in contracts if c.kind == "responder" and not _wildcard(c.pattern)
    }
    only_requests = {
        c.pattern
        for c in contracts
        if c.kind == "subscription"
        and c.pattern not in published
        and any(matches(c.pattern, r) for r in requested)
    }
    subscribed = {
        c.pattern
        for c in contracts
        if c.kind != "responder" and not any(matches(c.pattern, n) for n in published)
    } - only_requests
    events = [flow(n, published.get(n, set()), False) for n in sorted(set(published) | subscribed)]
    requests = [flow(n, requested.get(n, set()), True) for n in sorted(set(requested) | answered)]
    return events, requests


def _models(kernel: Kernel) -> dict[str, list[str]]:
    """Structs of each domain's ``models.py`` that the running plugins imported."""
    models: dict[str, list[str]] = {}
    for domain in sorted({r.domain for r in kernel.plugins.values()}):
        module = sys.modules.get(f"domains.{domain}.models")
        if module is None:
            continue
        structs = [
            v
            for v in vars(module).values()
            if isinstance(v, type)
            and issubclass(v, msgspec.Struct)
            and v.__module__ == module.__name__
        ]
        if structs:
            models[domain] = [compact_schema(s) for s in structs]
    return models


_STATEMENTS = {
    "create": re.compile(
        r"CREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"`\[\]]+)\s*\((.*)\)",
        re.I | re.S,
    ),
    "alter": re.compile(r"ALTER\s+TABLE\s+([\w.\"`\[\]]+)\s+ADD\s+(?:COLUMN\s+)?(.*)", re.I | re.S),
    "drop": re.compile(r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([\w.\"`\[\]]+)", re.I | re.S),
}


def _split_columns(body: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in body:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [" ".join(p.split()) for p in parts if p.strip()]


def _tables(root: Path) -> list[Table]:
    """Tables as the migrations leave them: CREATE TABLE, ALTER TABLE ... ADD, DROP TABLE."""
    tables: dict[str, Table] = {}
    for path in sorted(root.glob("domains/*/migrations/*.sql")):
        rel = str(path.relative_to(root))
        text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", path.read_text(encoding="utf-8"), flags=re.S)
        for statement in text.split(";"):
            statement = statement.strip()
            if found := _STATEMENTS["create"].match(statement):
                name = found.group(1).strip('"`[]')
                tables[name] = Table(name, rel, _split_columns(found.group(2)))
            elif found := _STATEMENTS["alter"].match(statement):
                table = tables.get(found.group(1).strip('"`[]'))
                if table is not None:
                    table.columns.append(" ".join(found.group(2).split()))
            elif found := _STATEMENTS["drop"].match(statement):
                tables.pop(found.group(1).strip('"`[]'), None)
    return [tables[name] for name in sorted(tables)]


def _project_name(root: Path) -> str:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return "this project"
    return str(data.get("project", {}).get("name") or "this project")


def describe(kernel: Kernel) -> Manifest:
    """Everything AI_CONTEXT.md says, read from a booted kernel."""
    declared = _declared(kernel.root)
    plugins = sorted([*_plugins(kernel), *declared], key=lambda p: p.identity)
    contracts = _contracts(kernel, plugins)
    known = {(c.kind, c.pattern, c.owner) for c in contracts}
    contracts += [  # what a sidecar declares, whether or not its program runs now
        Contract(kind=kind, pattern=pattern, owner=plugin.identity)
        for plugin in declared
        for kind in _SUBSCRIPTION_KINDS
        for pattern in plugin.registrations.get(kind, ())
        if (kind, pattern, plugin.identity) not in known
    ]
    events, requests = _flows(plugins, contracts)
    exported = exported_types(tool_packages(kernel.tools))
    tools = _tools(kernel, exported)
    named = [RECIPE, *(m.signature for t in tools for m in t.methods)]
    surfaces = {t.type_name for t in tools}  # defined in their tool's own section
    return Manifest(
        project=_project_name(kernel.root),
        tools=tools,
        plugins=plugins,
        models=_models(kernel),
        routes=_routes(kernel, declared),
        events=events,
        requests=requests,
        tables=_tables(kernel.root),
        types=define_types(named, {k: v for k, v in exported.items() if k not in surfaces}),
    )


async def describe_project(root: Path) -> Manifest:
    """Boot the project at ``root`` with :data:`BOOT_SETTINGS`, describe it, shut it down.

    The process environment is left out (``.env`` is read), so the result does not
    depend on the shell it runs in.
    """
    kernel = Kernel(root, environ={}, overrides={**BOOT_SETTINGS, "LOG_LEVEL": "WARNING"})
    async with kernel.run():
        return describe(kernel)


async def generate(root: Path) -> str:
    """The text of AI_CONTEXT.md for the project at ``root``."""
    return render(await describe_project(root))


# -- rendering ------------------------------------------------------------------------------

RECIPE = """\
One file = one feature: `domains/<domain>/plugins/<feature>_plugin.py` holds one `Plugin` subclass.

```python
from domains.orders.models import Order, OrderId  # msgspec Structs
from microcore import Plugin
from tools.db import Db
from tools.event_bus import EventBus
from tools.http import Context, Http, NotFound


class ArchiveOrderPlugin(Plugin):
    def __init__(self, http: Http, db: Db, event_bus: EventBus) -> None:  # names = tools
        self.http, self.db, self.bus = http, db, event_bus

    async def on_boot(self) -> None:  # register routes, subscriptions, jobs
        self.http.add_endpoint("/orders/{order_id:int}/archive", "POST", self.execute)

    async def execute(self, data: OrderId, context: Context) -> Order:
        \"\"\"Archive an order\"\"\"  # first line: the endpoint's summary
        row = await self.db.query_one("SELECT * FROM orders WHERE id = ?", (data.order_id,))
        if row is None:
            raise NotFound(f"order {data.order_id} does not exist")
        await self.db.execute("UPDATE orders SET archived = 1 WHERE id = ?", (data.order_id,))
        await self.bus.publish("order.archived", data)  # a Struct: its shape is listed
        return Order(**row)
```

Rules: hooks and handlers are `async`. Import `microcore`, tools' public types (never
`tools.<tool>._x`) and your domain's `models`, never another plugin (use the bus). `data`'s
annotation is the request model (a Struct from path, query, JSON or form body; `UploadFile`
fields take files), validated first (422); the return annotation is the response model. Return a
Struct, dict, list or None (204); raise an error below for a 4xx. `event: Event[Order]` gets an
`Order`; a responder's return, None included, is the reply. Schema change: a new
`domains/<domain>/migrations/NNN_<name>.sql`.
Tests (`tests/domains/<domain>/test_<feature>_plugin.py`): the plugin with mocks
(`ArchiveOrderPlugin(http=MagicMock(), db=AsyncMock(), ...)`, `microcore.testing.make_event(name,
payload)`), or end to end with fixtures `client` (`microcore.testing.TestClient`, httpx; `async with
client.sse(path) as s: await s.next()`), `events` (`microcore.testing.EventRecorder`: `published`,
`requests`, `await wait_for(name)`, `bus`, `await stub_responder(name, reply, delay=)`,
`silence(name)`, `await subscribe(name, handler, retries=)`), `microcore_settings` (a dict).
`microcore add plugin <domain> <name>` (`--route "PATCH /x/{id:int}"`, `--subscribe`, `--respond`,
`--publishes`) writes both; `microcore check` enforces the rules. A file not shown is named after
its class."""


def _names(items: Iterable[str]) -> str:
    return ", ".join(items) or "none"


def _render_tools(tools: list[ToolInfo]) -> list[str]:
    lines = [
        "## Tools",
        "",
        "A plugin gets a tool by naming it in `__init__`, typed as shown "
        "(`from tools.<tool> import <Type>`).",
    ]
    for tool in tools:
        typed = f" `{tool.type_name}`"  # only set when imported from tools.<name>
        lines += ["", f"### {tool.name}" + (typed if tool.type_name else "")]
        if tool.doc:
            lines.append(tool.doc)
        if tool.error is not None:
            lines.append(f"FAILED: {tool.error}")
        for names, rest, doc in _alike(tool.methods):
            lines.append(f"- `{'/'.join(names)}{rest}`" + (f": {doc}" if doc else ""))
    return lines


def _alike(methods: Iterable[Method]) -> list[tuple[list[str], str, str]]:
    """Methods as ``(names, parameters, doc)``; neighbours that differ only in their name are said
    once: ``debug/info/warning/error(msg: str, **fields)``: Log at that level."""
    groups: list[tuple[list[str], str, str]] = []
    for method in methods:
        signature = method.signature.removesuffix(" -> None")
        prefix = "async " if signature.startswith("async ") else ""
        name = re.split(r"\W", signature.removeprefix(prefix), maxsplit=1)[0]
        rest = signature[len(prefix) + len(name) :]
        shape = re.sub(rf"\b{name}\b", _NAME, method.doc)  # the doc with the name taken out
        if groups and (rest, shape) == groups[-1][1:] and _NAME in shape:
            groups[-1][0].append(name)
        else:
            groups.append(([prefix + name], rest, shape))
    return [
        (names, rest, doc.replace(_NAME, "that" if len(names) > 1 else names[0].split()[-1]))
        for names, rest, doc in groups
    ]


_NAME = "\0"  # stands for a method's own name while docs are compared


def _bare(signature: str) -> str:
    """``async query(sql, params)``: a method's name and parameter names (a type's member that
    a tool already lists, e.g. the ``db`` methods a ``Transaction`` repeats, is said once)."""
    name, _, rest = signature.partition("(")
    params = rest.rpartition(")")[0]
    depth, names, current = 0, [], ""
    for char in params + ",":
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            names.append(re.split(r"[:=]", current)[0].strip())
            current = ""
        else:
            current += char
    return f"{name}({', '.join(n for n in names if n)})"


def _render_types(types: list[TypeInfo], tools: list[ToolInfo]) -> list[str]:
    lines = ["## Types", "", "Every type named above, importable from the module shown."]
    known = {_bare(m.signature) for t in tools for m in t.methods}  # said once, in its tool
    for info in (t for t in types if t.kind != "error"):
        where = f"- `{info.name}` (`{info.module}`)"
        if info.kind == "alias":
            lines.append(f"{where} = `{info.alias}`")
            continue
        members = "; ".join(
            f"`{m.signature.replace(' (property)', '').removesuffix(' -> None')}`"
            for m in info.members
            if _bare(m.signature) not in known
        )
        lines.append(
            where + (f": {info.doc}" if info.doc else "") + (f" {members}" if members else "")
        )
    errors: dict[str, dict[str, list[str]]] = {}  # module -> answer -> classes
    for info in (t for t in types if t.kind == "error"):
        caller = info.code.startswith("(")  # HttpError: the status and code are the caller's
        answer = info.code if caller else f"{info.status or 500} `{info.code}`"
        errors.setdefault(info.module, {}).setdefault(answer, []).append(f"`{info.name}`")
    lines += [  # never empty: microcore's own errors are always there
        "",
        "Errors: one raised from a handler answers its status and code as "
        '`{"success": false, "error": {"code", "message"}}`.',
    ]
    lines += [
        f"- `{module}`: " + ", ".join(f"{'/'.join(names)} {answer}" for answer, names in by.items())
        for module, by in sorted(errors.items())
    ]
    modules = {t.module for t in types}
    if "tools.http" in modules:
        lines.append(FRAMEWORK_ERRORS)
    if "tools.event_bus" in modules:
        lines.append(DEAD_LETTER)
    return lines


FRAMEWORK_ERRORS = (
    "- unraised: bad JSON 400 `bad_request`, bad form 400 `malformed_form`, no/bad token on an"
    " `auth=` route 401 `unauthorized` (no role: 403 `forbidden`), cookie write without"
    " `X-CSRF-Token` 403 `csrf_failed`, unknown path 404 `not_found`, wrong method 405"
    " `method_not_allowed`, body over `HTTP_MAX_BODY`/`HTTP_MAX_UPLOAD` 413 `payload_too_large`,"
    " JSON to an upload route 415 `unsupported_media_type`, over `rate=` 429 `rate_limited`"
    " (`Retry-After`),"
    " invalid input 422 `validation_error` (`error.path`: the field; yours: `HttpError(422,"
    ' "validation_error", msg, path="$.x")`), other exceptions 500 `internal_error` (`error.id`'
    " in the log)"
)
DEAD_LETTER = (
    "- a handler failing after its retries: `_dlq.<name>` is published with payload "
    '`{"event": {the Event\'s fields}, "error": "Type: message", "attempts": N, '
    '"subscriber": "<plugin>"}`'
)


def _render_domains(manifest: Manifest, short: Callable[[str], str]) -> list[str]:
    """Each domain's models and plugins; a plugin's line lists its tools and endpoints."""
    lines = ["## Domains"]
    routes: dict[str, list[Route]] = {}
    for route in manifest.routes:
        routes.setdefault(route.owner, []).append(route)
    domains = sorted({p.domain for p in manifest.plugins} | set(manifest.models))
    for domain in domains:
        folder = f"domains/{domain}/"
        lines += ["", f"### {domain}"]
        models = manifest.models.get(domain)
        if models:
            lines.append("Models: " + "; ".join(f"`{m}`" for m in models))
        for plugin in (p for p in manifest.plugins if p.domain == domain):
            # the file only when the class name does not say it (CreateOrderPlugin lives in
            # plugins/create_order_plugin.py); routes and events are under their own headings
            file = plugin.file.removeprefix(folder)
            where = "" if file == _conventional(plugin.name) else f"`{file}`; "
            served = routes.get(plugin.identity, ())
            doc = _without_route(plugin.doc, served)
            facts = [
                f"{kind}s: {_names(labels)}"
                for kind, labels in plugin.registrations.items()
                if kind not in _LISTED_ELSEWHERE
            ]
            facts += [_route_line(r, short) for r in served]
            lines.append(
                f"- `{plugin.name}` ({where}{', '.join(plugin.tools) or 'no tools'})"
                + (f": {doc}" if doc else "")
                + (" " + "; ".join(facts) if facts else "")
            )
            if plugin.error is not None:
                lines.append(f"  FAILED: {plugin.error}")
    return lines


_SAYS_ROUTE = re.compile(r"([A-Z]+) (/\S*): (\w)")


def _without_route(doc: str, routes: Iterable[Route]) -> str:
    """A plugin's docstring without the ``POST /products: `` its endpoint line repeats."""
    said = _SAYS_ROUTE.match(doc)
    if said is None:
        return doc
    paths = {(r.method, re.sub(r":\w+}", "}", r.path)) for r in routes}
    if (said[1], re.sub(r":\w+}", "}", said[2])) not in paths:
        return doc
    return said[3].upper() + doc[said.end() :]


def _route_line(route: Route, short: Callable[[str], str]) -> str:
    """``GET /products/{product_id:int}` 200 `ProductId` -> `Product``: a plugin's endpoint."""
    text = f"`{route.method} {route.path}`"
    text += f" {route.status_code}" if route.status_code else ""
    text += "" if route.kind == "route" else f" [{route.kind}]"
    text += f" `{short(route.request)}`" if route.request is not None else ""
    text += f" -> `{short(route.response)}`" if route.response is not None else ""
    return text


# registrations listed elsewhere: routes as the plugin's endpoints, subscriptions and
# responders under Events and Requests (others, e.g. jobs, are listed by kind)
_LISTED_ELSEWHERE = {"route", "sse", "websocket", "static", "subscription", "responder"}


def _conventional(name: str) -> str:
    """``CreateOrderPlugin`` -> ``plugins/create_order_plugin.py``."""
    return "plugins/" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() + ".py"


def _render_routes(routes: list[Route], plugins: set[str]) -> list[str]:
    """The tools' own endpoints (docs, system) on one line; a plugin's are on its line."""
    lines = ["## Endpoints served by tools", ""]
    served: dict[str, list[str]] = {}  # "GET /system/" -> ["events", "health", ...]
    for r in routes:
        if r.owner not in plugins and r.kind != "static":
            head, _, tail = r.path.rpartition("/")
            if not head:  # /docs: on its own
                head, tail = r.path, ""
            served.setdefault(f"{r.method} {head}" + ("/" if tail else ""), []).append(tail)
    if served:
        listed = [
            f"`{prefix}{tails[0]}`" if len(tails) == 1 else f"`{prefix}({'|'.join(tails)})`"
            for prefix, tails in served.items()
        ]
        lines.append(", ".join(listed))
    return lines if len(lines) > 2 else [*lines, "none"]


def _render_flows(
    title: str, flows: list[Flow], sends: str, receives: str, short: Callable[[str], str]
) -> list[str]:
    lines = [title, ""]
    for flow in flows:
        shape = f" `{short(flow.payload) or 'any'}`" if flow.payload or flow.reply else ""
        if flow.reply:
            shape += f" -> `{short(flow.reply)}`"
        lines.append(
            f"- `{flow.name}`{shape}: {sends} {_names(flow.senders)}; "
            f"{receives} {_names(flow.receivers)}"
        )
    return lines if flows else [*lines, "none"]


def _shortener(models: dict[str, list[str]]) -> Callable[[str], str]:
    """Write a domain model by its name alone (its fields are on the domain's Models line)."""
    full = sorted((m for ms in models.values() for m in ms if "{" in m), key=len, reverse=True)

    def short(text: str) -> str:
        for model in full:
            text = text.replace(model, model.partition("{")[0])
        return text

    return short


def _render_tables(tables: list[Table]) -> list[str]:
    lines = ["## Tables", ""]
    for table in tables:
        lines.append(f"- `{table.name}` (`{table.file}`): " + ", ".join(table.columns))
    return lines if tables else [*lines, "none"]


def render(manifest: Manifest) -> str:
    """The Markdown text of AI_CONTEXT.md."""
    plugins = {p.identity for p in manifest.plugins}
    short = _shortener(manifest.models)
    counts = (
        f"{len(manifest.tools)} tools, {len(manifest.plugins)} plugins, "
        f"{sum(r.owner in plugins for r in manifest.routes)} endpoints, "
        f"{len(manifest.events)} events, "
        f"{len(manifest.requests)} request names, {len(manifest.tables)} tables"
    )
    sections = [
        [
            f"# AI_CONTEXT.md: {manifest.project}",
            "",
            "Generated from the running app by `microcore context`: do not edit by hand.",
            f"{counts}.",
        ],
        ["## Write a feature", "", RECIPE],
        _render_tools(manifest.tools),
        _render_types(manifest.types, manifest.tools),
        _render_domains(manifest, short),
        _render_routes(manifest.routes, plugins),
        _render_flows("## Events", manifest.events, "published by", "handled by", short),
        _render_flows(
            "## Requests (request/reply)", manifest.requests, "requested by", "answered by", short
        ),
        _render_tables(manifest.tables),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
