"""Scaffolding: ``microcore new`` (a runnable project) and ``microcore add plugin``.

Templates live in ``microcore/templates``; ``{{name}}`` placeholders are
replaced. ``new`` copies the bundle (``bundle.py``: the example app, the
standard tools, the products domain and its tests) that this microcore carries,
records the tools in ``tools.lock.json`` (``microcore tools upgrade`` reads it)
and makes the project depend on ``microcore`` by name and version range.
"""

from __future__ import annotations

import ast
import keyword
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .._core.errors import ConfigurationError
from .._names import check_name, check_pattern
from .bundle import bundle_files, bundle_root, requirement
from .upgrade import lock_files, write_lock

__all__ = ("PluginShape", "add_plugin", "new_project")

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
_LINE_LIMIT = 100  # ruff's line-length in generated projects
_PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def render_template(relative: str, values: Mapping[str, str]) -> str:
    """The text of ``templates/<relative>`` with ``{{key}}`` replaced by ``values[key]``."""
    text = (TEMPLATES / relative).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# -- add plugin ---------------------------------------------------------------------

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_PARAM_TYPES = {None: "str", "str": "str", "path": "str", "int": "int", "float": "float"}
_MODEL = re.compile(r"[A-Z][A-Za-z0-9]*")


@dataclass(frozen=True)
class PluginShape:
    """What ``microcore add plugin`` writes: a route, a subscription, a responder, events it
    publishes.

    No route, no subscription and no responder means ``GET /<domain>/<name>``.
    """

    route: str | None = None  # "PATCH /products/{product_id:int}"
    request: str | None = None  # the request model's name (added to models.py if missing)
    response: str | None = None  # the response model's name (likewise)
    subscribe: str | None = None  # an event name or pattern
    publishes: tuple[str, ...] = ()
    respond: str | None = None  # a request name it answers


def _identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(value) or keyword.iskeyword(value):
        raise ConfigurationError(
            f"{what} {value!r} is not a valid name; use lowercase letters, digits and "
            "underscores, starting with a letter (e.g. 'orders', 'create_order')"
        )
    return value


def _model_name(value: str, flag: str) -> str:
    if not _MODEL.fullmatch(value):
        raise ConfigurationError(
            f"{flag} {value!r} is not a model name; name a class, e.g. UpdateProduct"
        )
    return value


def _route(value: str) -> tuple[str, str, list[tuple[str, str]]]:
    """``"PATCH /products/{product_id:int}"`` -> method, path, [(param, python type)]."""
    method, _, path = value.strip().partition(" ")
    method, path = method.upper(), path.strip()
    if method not in _METHODS or not path.startswith("/") or " " in path:
        raise ConfigurationError(
            f"--route {value!r} is not 'METHOD /path'; e.g. --route 'PATCH /products/"
            "{product_id:int}' (methods: " + ", ".join(_METHODS) + ")"
        )
    params = []
    for param, kind in _PARAM.findall(path):
        if (kind or None) not in _PARAM_TYPES:
            raise ConfigurationError(
                f"--route {value!r}: the path parameter type {kind!r} is not one of "
                "str, path, int, float"
            )
        params.append((param, _PARAM_TYPES[kind or None]))
    return method, path, params


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _handler_name(event: str) -> str:
    return "on_" + (re.sub(r"[^a-z0-9]+", "_", event.lower()).strip("_") or "event")


def _answer_name(request: str) -> str:
    return "answer_" + (re.sub(r"[^a-z0-9]+", "_", request.lower()).strip("_") or "request")


def _reply_model(
    domain: str, name: str, model: str, what: str, classes: dict[str, ast.ClassDef]
) -> str | None:
    """The class to add to models.py for the answer model ``model`` (None: it exists, and
    the generated handler can build it with no arguments)."""
    if model not in classes:
        return (
            f"class {model}(msgspec.Struct):\n"
            f'    """What {name} answers."""\n\n    ok: bool = True\n'
        )
    if required := _required_fields(classes[model]):
        raise ConfigurationError(
            f"{what} {model}: domains/{domain}/models.py's {model} has required "
            f"fields ({', '.join(required)}), so the generated handler cannot build one; "
            "name a new model (it is added to models.py) and return yours when you edit it"
        )
    return None


def _classes(models: Path) -> dict[str, ast.ClassDef]:
    if not models.is_file():
        return {}
    tree = ast.parse(models.read_text(encoding="utf-8"), filename=str(models))
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _required_fields(node: ast.ClassDef) -> list[str]:
    return [
        stmt.target.id
        for stmt in node.body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
        if stmt.value is None
    ]


_MODELS_HEADER = """\"\"\"Shapes shared by the {domain} domain's plugins (msgspec Structs).

Plugins import them absolutely::

    from domains.{domain}.models import ...

A handler's annotations are its models: ``data: X`` is decoded from the path, query and
JSON body and validated before the handler runs (422 naming the field otherwise); ``-> Y``
is what it answers. Constraints go in the types: ``Annotated[float, msgspec.Meta(gt=0)]``.
\"\"\"

from __future__ import annotations
"""


def _models_text(domain: str, existing: str | None, classes: list[str]) -> str:
    text = existing if existing is not None else _MODELS_HEADER.format(domain=domain)
    future = "from __future__ import annotations\n"
    if classes and "import msgspec" not in text:
        if future not in text:
            raise ConfigurationError(
                f"domains/{domain}/models.py does not import msgspec; add 'import msgspec' "
                "to it, or name models it already defines"
            )
        text = text.replace(future, future + "\nimport msgspec\n", 1)
    return text.rstrip("\n") + "\n" + "".join(f"\n\n{block}" for block in classes)


def _migrations(domain: str) -> dict[str, str]:
    values = {"domain": domain}
    return {
        f"001_create_{domain}.sql": render_template("plugin/migration.sql.tmpl", values),
        f"001_create_{domain}.postgresql.sql": render_template(
            "plugin/migration.postgresql.sql.tmpl", values
        ),
    }


@dataclass
class _Code:
    """The pieces of the plugin file and of its test, joined at the end."""

    imports: set[str] = field(default_factory=set)
    tools: dict[str, str] = field(default_factory=dict)  # parameter -> type, in order
    boot: list[str] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    test_imports: set[str] = field(default_factory=set)


def _publish_lines(events: tuple[str, ...], name: str, indent: str) -> list[str]:
    return [
        f'{indent}await self.bus.publish("{event}", {{"feature": "{name}"}})' for event in events
    ]


def _publish_asserts(events: tuple[str, ...], name: str) -> list[str]:
    lines = [
        f'    bus.publish.assert_any_await("{event}", {{"feature": "{name}"}})' for event in events
    ]
    return [*lines, f"    assert bus.publish.await_count == {len(events)}"] if events else []


_MOCKS = {"http": ("http", "MagicMock()"), "event_bus": ("bus", "AsyncMock()")}
_MOCKS["logger"] = ("logger", "MagicMock()")


def _plugin_args(code: _Code) -> str:
    """The test's mocks, then the plugin built from them."""
    names = [_MOCKS[param][0] for param in code.tools]
    mocks = [_MOCKS[param][1] for param in code.tools]
    args = ", ".join(f"{param}={_MOCKS[param][0]}" for param in code.tools)
    return f"{', '.join(names)} = {', '.join(mocks)}\n    plugin = CLASS({args})"


def _render_plugin(
    domain: str, name: str, shape: PluginShape, models: Path
) -> tuple[str, str, str | None]:
    """The plugin's text, its test's text, and models.py's new text (None: unchanged)."""
    class_name = _camel(name) + "Plugin"
    title = name.replace("_", " ").capitalize()
    code = _Code(imports={"from microcore import Plugin"})
    new_models: list[str] = []
    classes = _classes(models)
    summary = title
    bus_only = shape.subscribe or shape.respond
    route = shape.route or (None if bus_only else f"GET /{domain}/{name.replace('_', '-')}")
    if shape.publishes or bus_only:
        code.tools["event_bus"] = "EventBus"
        code.imports.add("from tools.event_bus import EventBus")
    if route is not None:
        method, path, params = _route(route)
        summary = f"{method} {path}: {title}"
        request = _model_name(shape.request or f"{_camel(name)}Request", "--request")
        response = _model_name(shape.response or f"{_camel(name)}Response", "--response")
        if request not in classes:
            fields = "".join(f"\n    {param}: {kind}" for param, kind in params)
            doc = f"What {method} {path} reads: path parameters, query and JSON body fields."
            if len(doc) > 88:
                doc = f"What {name} reads: path parameters, query and JSON body fields."
            new_models.append(
                f"class {request}(msgspec.Struct, forbid_unknown_fields=True):\n"
                f'    """{doc}"""\n' + (f"\n{fields.lstrip(chr(10))}\n" if fields else "")
            )
        if (block := _reply_model(domain, name, response, "--response", classes)) is not None:
            new_models.append(block)
        code.tools = {"http": "Http", **code.tools}
        code.imports.add("from tools.http import Context, Http")
        code.imports.add(
            f"from domains.{domain}.models import {', '.join(sorted({request, response}))}"
        )
        endpoint = [f'"{path}"', f'"{method}"', "self.execute", f'tags=["{domain}"]']
        code.boot.append(_fit(8, "self.http.add_endpoint(", endpoint, ")"))
        code.handlers.append(
            "\n".join(
                [
                    _fit(
                        4,
                        "async def execute(",
                        ["self", f"data: {request}", "context: Context"],
                        f") -> {response}:",
                    ),
                    f'        """{title}"""',
                    f'        self.logger.info("{name} called")',
                    *(
                        _publish_lines(shape.publishes, name, "        ")
                        if not shape.subscribe
                        else []
                    ),
                    f"        return {response}()",
                ]
            )
        )
        code.test_imports.add(f"from domains.{domain}.models import {response}")
        code.tests.append(
            "\n".join(
                [
                    f"async def test_{name}_registers_its_route() -> None:",
                    _doc(
                        f"on_boot registers {method} {path} with its handler.",
                        "on_boot registers the route with its handler.",
                    ),
                    "    ARGS",
                    "    await plugin.on_boot()",
                    "    assert http.add_endpoint.call_args.args == (",
                    f'        "{path}",',
                    f'        "{method}",',
                    "        plugin.execute,",
                    "    )",
                    "",
                    "",
                    f"async def test_{name}_answers() -> None:",
                    f'    """The handler answers {response} and logs the call."""',
                    "    ARGS",
                    "    answer = await plugin.execute(MagicMock(), MagicMock())",
                    f"    assert answer == {response}()",
                    f'    logger.info.assert_called_once_with("{name} called")',
                    *(_publish_asserts(shape.publishes, name) if not shape.subscribe else []),
                ]
            )
        )
    if shape.subscribe is not None:
        check_pattern(shape.subscribe)
        handler = _handler_name(shape.subscribe)
        if route is None:
            summary = f"On {shape.subscribe}: {title}"
        code.imports.discard("from microcore import Plugin")
        code.imports.add("from microcore import Event, Plugin")
        code.boot.append(f'        await self.bus.subscribe("{shape.subscribe}", self.{handler})')
        code.handlers.append(
            "\n".join(
                [
                    f"    async def {handler}(self, event: Event) -> None:",
                    f'        self.logger.info("{shape.subscribe} received", id=event.id)',
                    *_publish_lines(shape.publishes, name, "        "),
                ]
            )
        )
        code.tests.append(
            "\n".join(
                [
                    f"async def test_{name}_subscribes() -> None:",
                    _doc(
                        f"on_boot subscribes {handler} to {shape.subscribe}.",
                        f"on_boot subscribes {handler}.",
                    ),
                    "    ARGS",
                    "    await plugin.on_boot()",
                    f'    subscribed = ("{shape.subscribe}", plugin.{handler})',
                    "    bus.subscribe.assert_awaited_once_with(*subscribed)",
                    "",
                    "",
                    f"async def test_{name}_handles_the_event() -> None:",
                    '    """The handler logs the event it received."""',
                    "    ARGS",
                    f'    await plugin.{handler}(MagicMock(id="e1"))',
                    f'    logged = "{shape.subscribe} received"',
                    '    logger.info.assert_called_once_with(logged, id="e1")',
                    *_publish_asserts(shape.publishes, name),
                ]
            )
        )
    if shape.respond is not None:
        _render_responder(domain, name, shape, route, classes, code, new_models)
        if route is None and shape.subscribe is None:
            summary = f"Answers {shape.respond}: {title}"
    for event in shape.publishes:
        check_name(event)
    code.tools["logger"] = "Logger"
    code.imports.add("from tools.logger import Logger")
    signature = ", ".join(f"{param}: {kind}" for param, kind in code.tools.items())
    attrs = {"http": "self.http", "event_bus": "self.bus", "logger": "self.logger"}
    targets = ", ".join(attrs[param] for param in code.tools)
    first = f'"""{summary}.'
    if len(first) > _LINE_LIMIT:
        first = f'"""{title}.'
    values = {
        "summary": first.removeprefix('"""'),
        "imports": _imports(code.imports),
        "class_name": class_name,
        "params": signature,
        "assign": f"{targets} = {', '.join(code.tools)}",
        "boot": "\n".join(code.boot),
        "handlers": "\n\n".join(code.handlers),
    }
    plugin = render_template("plugin/plugin.py.tmpl", values)
    test_imports = {
        f"from domains.{domain}.plugins.{name}_plugin import {class_name}",
        *code.test_imports,
    }
    mock_names = "AsyncMock, MagicMock" if "event_bus" in code.tools else "MagicMock"
    test = render_template(
        "plugin/test_plugin.py.tmpl",
        {
            "class_name": class_name,
            "mocks": mock_names,
            "imports": _imports(test_imports),
            "tests": "\n\n\n".join(code.tests).replace(
                "ARGS", _plugin_args(code).replace("CLASS", class_name)
            ),
        },
    )
    models_text = None
    if new_models or not models.is_file():
        existing = models.read_text(encoding="utf-8") if models.is_file() else None
        models_text = _models_text(domain, existing, new_models)
    return plugin, test, models_text


def _render_responder(
    domain: str,
    name: str,
    shape: PluginShape,
    route: str | None,
    classes: dict[str, ast.ClassDef],
    code: _Code,
    new_models: list[str],
) -> None:
    """``--respond NAME``: answer ``request(NAME, ...)`` with a reply model (``--response``
    when there is no route, else ``<Name>Reply``), and the tests that say so."""
    assert shape.respond is not None
    check_name(shape.respond)
    handler = _answer_name(shape.respond)
    reply = _model_name(
        shape.response if route is None and shape.response else f"{_camel(name)}Reply",
        "--response",
    )
    if (block := _reply_model(domain, name, reply, "--response", classes)) is not None:
        new_models.append(block)
    code.imports.discard("from microcore import Plugin")
    code.imports.add("from microcore import Event, Plugin")
    code.imports.add(f"from domains.{domain}.models import {reply}")
    code.test_imports.add(f"from domains.{domain}.models import {reply}")
    code.boot.append(f'        await self.bus.respond("{shape.respond}", self.{handler})')
    code.handlers.append(
        "\n".join(
            [
                f"    async def {handler}(self, event: Event) -> {reply}:",
                f'        """Reply to {shape.respond} (returning None replies too)."""',
                f'        self.logger.info("{shape.respond} asked", id=event.id)',
                f"        return {reply}()",
            ]
        )
    )
    code.tests.append(
        "\n".join(
            [
                f"async def test_{name}_responds() -> None:",
                _doc(
                    f"on_boot makes {handler} the responder of {shape.respond}.",
                    f"on_boot registers {handler} as a responder.",
                ),
                "    ARGS",
                "    await plugin.on_boot()",
                f'    responder = ("{shape.respond}", plugin.{handler})',
                "    bus.respond.assert_awaited_once_with(*responder)",
                "",
                "",
                f"async def test_{name}_replies() -> None:",
                f'    """The responder replies {reply} and logs the request."""',
                "    ARGS",
                f'    assert await plugin.{handler}(MagicMock(id="r1")) == {reply}()',
                f'    logger.info.assert_called_once_with("{shape.respond} asked", id="r1")',
            ]
        )
    )


def _doc(text: str, shorter: str) -> str:
    """A test's one-line docstring, the shorter text when the first is over the limit."""
    line = f'    """{text}"""'
    return line if len(line) <= _LINE_LIMIT else f'    """{shorter}"""'


def _fit(indent: int, opener: str, args: list[str], closer: str) -> str:
    """``opener(args)closer`` on one line, or wrapped the way ``ruff format`` wraps it."""
    pad = " " * indent
    line = f"{pad}{opener}{', '.join(args)}{closer}"
    if len(line) <= _LINE_LIMIT:
        return line
    inner = f"{pad}    {', '.join(args)}"
    if len(inner) <= _LINE_LIMIT:
        return f"{pad}{opener}\n{inner}\n{pad}{closer}"
    return f"{pad}{opener}\n" + "".join(f"{pad}    {arg},\n" for arg in args) + f"{pad}{closer}"


def _imports(lines: set[str]) -> str:
    """Import lines as ruff's isort writes them: first party (domains, microcore, tools)
    sorted by module, one name a line in parentheses when the line is too long."""
    merged: dict[str, set[str]] = {}  # one line per module: ruff's isort joins them
    for line in lines:
        head, _, names = line.partition(" import ")
        merged.setdefault(head, set()).update(names.split(", "))
    out = []
    joined = (f"{head} import {', '.join(sorted(names))}" for head, names in merged.items())
    for line in sorted(joined, key=lambda line: line.split(" ")[1]):
        if len(line) > _LINE_LIMIT:
            head, _, names = line.partition(" import ")
            line = f"{head} import (\n" + "".join(f"    {n},\n" for n in names.split(", ")) + ")"
        out.append(line)
    return "\n".join(out)


def add_plugin(
    root: Path, domain: str, name: str, shape: PluginShape | None = None
) -> dict[Path, str]:
    """Write ``domains/<domain>/plugins/<name>_plugin.py`` and its test, shaped by ``shape``;
    returns each file written, with ``"created"`` or ``"updated"``.

    A new domain also gets ``models.py`` and ``migrations/`` (its first migration as the
    portable/SQLite file and the PostgreSQL variant, each explaining the pairing); the
    request and response models are added to ``models.py`` when it lacks them.

    >>> add_plugin(Path("."), "orders", "create_order")   # class CreateOrderPlugin
    """
    shape = shape or PluginShape()
    domain = _identifier(domain, "domain")
    name = _identifier(name.removesuffix("_plugin"), "plugin name")
    folder = root / "domains" / domain
    plugin = folder / "plugins" / f"{name}_plugin.py"
    test = root / "tests" / "domains" / domain / f"test_{name}_plugin.py"
    for path in (plugin, test):
        if path.exists():
            raise ConfigurationError(
                f"{path.relative_to(root)} already exists; pick another name or edit that file"
            )
    plugin_text, test_text, models_text = _render_plugin(domain, name, shape, folder / "models.py")
    written = {plugin: "created", test: "created"}
    for package in (folder, folder / "plugins"):
        if not (package / "__init__.py").exists():
            _write(package / "__init__.py", "")
    if models_text is not None:
        written[folder / "models.py"] = "updated" if (folder / "models.py").exists() else "created"
        _write(folder / "models.py", models_text)
    if not (folder / "migrations").exists():
        for file, text in _migrations(domain).items():
            _write(folder / "migrations" / file, text)
            written[folder / "migrations" / file] = "created"
    _write(plugin, plugin_text)
    _write(test, test_text)
    return written


# -- new project ----------------------------------------------------------------------


def _project_name(target: Path) -> str:
    name = target.name
    if not _PROJECT_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} cannot be a project name; name the folder with letters, digits, "
            "'-', '_' or '.', e.g. 'shop-api'"
        )
    return name


def new_project(target: Path, *, source: Path | None = None, version: str = __version__) -> Path:
    """Create a runnable project in ``target`` (absent or empty) from the example app.

    ``source`` is the bundle to copy (default: the one this microcore carries);
    ``tools.lock.json`` records the standard tools as shipped by ``version``.
    """
    target = target.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigurationError(f"{target} already exists and is not empty; pick a new folder")
    name = _project_name(target)
    source = source or bundle_root()
    files = bundle_files(source)
    target.mkdir(parents=True, exist_ok=True)
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target / rel)
    write_lock(target, version, lock_files(source, files))
    values = {"name": name, "requirement": requirement(version), "version": version}
    for rel in ("Makefile", "README.md", "pyproject.toml"):
        _write(target / rel, render_template(f"project/{rel}.tmpl", values))
    return target
