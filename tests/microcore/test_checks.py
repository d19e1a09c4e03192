"""microcore check: architecture rules from a static read of the sources."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from microcore._dev.checks import check_project, normalize_path, reserved_routes
from microcore._dev.cli import main
from microcore._dev.manifest import describe_project
from microcore._dev.scan import scan_file
from microcore.events import matches as pattern_matches
from microcore.testing import Kernel
from tests.conftest import ProjectFactory

REPO = Path(__file__).resolve().parents[2]

GOOD = """
from microcore import Plugin


class GoodPlugin(Plugin):
    def __init__(self, http, event_bus):
        self.http, self.bus = http, event_bus

    async def on_boot(self):
        self.http.add_endpoint("/items/{item_id:int}", "GET", self.get)
        await self.bus.subscribe("stock.*", self.on_stock)

    async def get(self, data, context):
        return await self.bus.request("stock.check", {"id": data["item_id"]})

    async def on_stock(self, event):
        return {"ok": True}
"""

BROKEN = {
    "domains/shop/plugins/good_plugin.py": GOOD,
    "domains/shop/plugins/imports_plugin.py": """
    from domains.shop.plugins.good_plugin import GoodPlugin
    from microcore.tooling import Kernel
    from . import good_plugin
    from microcore import Plugin


    class ImportsPlugin(Plugin):
        async def on_boot(self):
            import app
    """,
    "domains/shop/plugins/collide_plugin.py": """
    import microcore as mc


    class CollidePlugin(mc.Plugin):
        def __init__(self, http, event_bus):
            self.http, self.bus = http, event_bus

        async def on_boot(self):
            self.http.add_endpoint("/items/{id:int}", method="get", handler=self.get)
            self.http.add_endpoint(path="/other", method=self.verb(), handler=self.get)
            self.http.add_sse("/feed", self.feed)
            self.http.add_websocket("/ws", self.ws)

        async def get(self, data, context):
            return await self.bus.request(name="price.quote", payload={})
    """,
    "domains/shop/plugins/twice_plugin.py": """
    from microcore import Plugin as Base


    class FirstPlugin(Base):
        pass


    class SecondPlugin(FirstPlugin):
        async def on_boot(self):
            self.http.add_sse("/feed", self.feed)
            self.http.add_websocket("/ws", self.ws)
    """,
    "domains/shop/plugins/empty_plugin.py": """
    def helper():
        return 1
    """,
    "domains/shop/plugins/syntax_plugin.py": "class Broken(:\n",
    "tools/bad/bad_tool.py": """
    from microcore import Tool
    from domains.shop.models import Item
    import domains


    class BadTool(Tool):
        name = "bad"
    """,
}


def _messages(root: Path) -> list[str]:
    findings, _, _ = check_project(root)
    return [str(f) for f in findings]


def test_check_example_project_passes() -> None:
    """The example app in this repository follows every rule."""
    findings, plugins, tools = check_project(REPO)
    assert findings == []
    assert plugins >= 5 and tools >= 1


def test_check_flags_plugin_imports(make_project: ProjectFactory) -> None:
    """Imports of another plugin module, the kernel or the app module are flagged at their line."""
    messages = _messages(make_project(BROKEN, tools=[]))
    rel = "domains/shop/plugins/imports_plugin.py"
    assert any(m.startswith(f"{rel}:2: plugin imports another plugin module") for m in messages)
    assert any(
        m.startswith(f"{rel}:3: plugin imports the kernel ('microcore.tooling')") for m in messages
    )
    relative = f"{rel}:4: plugin imports another plugin module 'domains.shop.plugins.good_plugin'"
    assert any(m.startswith(relative) for m in messages)
    assert any(m.startswith(f"{rel}:10: plugin imports the kernel ('app')") for m in messages)
    assert all("publish an event" in m for m in messages if "another plugin module" in m)


def test_check_flags_tool_importing_domain(make_project: ProjectFactory) -> None:
    """A tool importing a domain is flagged with how to fix it."""
    messages = _messages(make_project(BROKEN, tools=[]))
    flagged = [m for m in messages if "tool imports a domain" in m]
    assert [m.split(": ")[0] for m in flagged] == [
        "tools/bad/bad_tool.py:3",
        "tools/bad/bad_tool.py:4",
    ]
    assert "tools are infrastructure" in flagged[0]


def test_check_flags_route_collisions(make_project: ProjectFactory) -> None:
    """Same method and path (parameter names aside) in two plugins: the later one is flagged."""
    messages = _messages(make_project(BROKEN, tools=[]))
    collisions = [m for m in messages if "collides" in m]
    assert len(collisions) == 3
    assert any(
        m.startswith("domains/shop/plugins/good_plugin.py:10: route GET /items/{item_id:int} ")
        and "collide_plugin.py:10" in m
        for m in collisions
    )
    assert any("route GET /feed" in m and "twice_plugin.py" in m for m in collisions)
    assert any("route WS /ws" in m for m in collisions)


def test_check_flags_request_without_responder(make_project: ProjectFactory) -> None:
    """A request name nothing subscribes to is flagged; one a pattern answers is not."""
    messages = _messages(make_project(BROKEN, tools=[]))
    missing = [m for m in messages if "has no responder" in m]
    assert len(missing) == 1
    assert missing[0].startswith("domains/shop/plugins/collide_plugin.py:16: request 'price.quote'")
    assert "self.bus.subscribe('price.quote'" in missing[0]


def test_check_flags_plugin_class_count(make_project: ProjectFactory) -> None:
    """A plugin file must hold exactly one plugin class; syntax errors are reported too."""
    root = make_project(BROKEN, tools=[])
    (root / "domains/shop/plugins/latin_plugin.py").write_bytes(b"x = '\xff'\n")
    messages = _messages(root)
    assert "domains/shop/plugins/empty_plugin.py:1: plugin file holds no plugin class" in "\n".join(
        messages
    )
    twice = [m for m in messages if "plugin classes" in m]
    assert len(twice) == 1 and twice[0].startswith("domains/shop/plugins/twice_plugin.py:9:")
    assert "move SecondPlugin to its own" in twice[0]
    assert any(
        m.startswith("domains/shop/plugins/syntax_plugin.py:1: cannot be parsed") for m in messages
    )
    assert any(
        m.startswith("domains/shop/plugins/latin_plugin.py:1: cannot be read") for m in messages
    )


def test_check_command_exit_status(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`microcore check` exits 1 listing each finding, and 0 with a summary on a clean project."""
    root = make_project(BROKEN, tools=[])
    assert main(["check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "problem(s) found" in err and "imports_plugin.py:2:" in err
    assert main(["check", "--root", str(REPO)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_check_flags_the_kernel_imported_as_a_name(make_project: ProjectFactory) -> None:
    """`from microcore import tooling` hands a plugin the kernel as surely as
    `from microcore.tooling import Kernel` does, and is flagged the same way."""
    root = make_project(
        {
            "domains/shop/plugins/sneaky_plugin.py": """
            from microcore import Plugin, tooling


            class SneakyPlugin(Plugin):
                async def on_boot(self):
                    self.kernel_class = tooling.Kernel
            """,
        },
        tools=[],
    )
    assert _messages(root) == [
        "domains/shop/plugins/sneaky_plugin.py:2: plugin imports the kernel ('microcore.tooling'); "
        "plugins receive tools by naming them in __init__ and import only the public "
        "'microcore' API (Plugin, Event, errors)"
    ]


def test_check_applies_the_import_rules_to_domain_modules(make_project: ProjectFactory) -> None:
    """A domain module (services.py, models.py, ...) may not import a plugin module or the
    kernel either, or a plugin importing it would get them with the check green."""
    root = make_project(
        {
            "domains/shop/plugins/good_plugin.py": GOOD,
            "domains/shop/services.py": """
            from domains.shop.plugins.good_plugin import GoodPlugin
            from microcore.tooling import Kernel
            from microcore import Event
            """,
        },
        tools=[],
    )
    assert [m.split(";")[0] for m in _messages(root)] == [
        "domains/shop/services.py:2: domain module imports a plugin module "
        "'domains.shop.plugins.good_plugin'",
        "domains/shop/services.py:3: domain module imports the kernel ('microcore.tooling')",
    ]


def test_check_counts_only_calls_on_the_event_bus(make_project: ProjectFactory) -> None:
    """`client.request("GET", url)` is no bus request; calls on the injected `event_bus`, on
    names ending in `bus` and on what was assigned from them are."""
    root = make_project(
        {
            "domains/shop/plugins/fetch_plugin.py": """
            import httpx
            from microcore import Plugin


            class FetchPlugin(Plugin):
                def __init__(self, http, event_bus):
                    self.http, self.events = http, event_bus
                    self.relay: object = self.events

                async def on_boot(self):
                    await self.events.subscribe("rates.get", self.on_get)

                async def on_get(self, event):
                    async with httpx.AsyncClient() as client:
                        response = await client.request("GET", "https://rates.example/eur")
                    await self.relay.publish("rates.fetched", {})
                    await self.http.request("rates.nothing")
                    return response.json()
            """,
        },
        tools=[],
    )
    assert _messages(root) == []
    scan = scan_file(root, root / "domains/shop/plugins/fetch_plugin.py")
    assert [(c.kind, c.name) for c in scan.calls] == [
        ("subscribe", "rates.get"),
        ("publish", "rates.fetched"),
    ]


BASES = {
    "domains/shop/base.py": """
    from microcore import Plugin


    class ShopPlugin(Plugin):
        async def on_boot(self):
            pass
    """,
    "domains/shop/kinds/__init__.py": """
    from ..base import ShopPlugin


    class KindPlugin(ShopPlugin):
        pass
    """,
    "domains/shop/exports.py": "from domains.shop.kinds import KindPlugin as Exported\n",
    "domains/shop/loop.py": "from domains.shop.loop import Loop\n",
    "domains/shop/broken.py": "class Base(:\n",
    "domains/shop/plugins/orders_plugin.py": """
    from domains.shop.base import ShopPlugin


    class OrdersPlugin(ShopPlugin):
        pass
    """,
    "domains/shop/plugins/kinds_plugin.py": """
    import domains.shop.exports as ex


    class KindsPlugin(ex.Exported):
        pass
    """,
    "domains/shop/plugins/odd_plugin.py": """
    from domains.shop.broken import Base
    from domains.shop.loop import Loop
    from domains.shop.nowhere import Gone


    class FromBroken(Base):
        pass


    class FromLoop(Loop):
        pass


    class FromNowhere(Gone):
        pass


    class FromCall(make_base()):
        pass
    """,
}


def test_check_accepts_plugins_built_on_a_domain_base_class(make_project: ProjectFactory) -> None:
    """A plugin class may derive from microcore.Plugin through base classes in the domain's
    modules (imported, relative, re-exported): the check agrees with the kernel that loads it."""
    root = make_project(BASES, tools=[])

    async def statuses() -> dict[str, str]:
        kernel = Kernel(root, environ={})
        async with kernel.run():
            return {k: v.status for k, v in kernel.status().plugins.items()}

    loaded = anyio.run(statuses)
    assert loaded["shop.OrdersPlugin"] == loaded["shop.KindsPlugin"] == "ok"
    assert [m.split(";")[0] for m in _messages(root)] == [
        "domains/shop/broken.py:1: cannot be parsed: invalid syntax",
        "domains/shop/plugins/odd_plugin.py:1: plugin file holds no plugin class",
    ]


def test_check_flags_routes_that_tools_reserve(make_project: ProjectFactory) -> None:
    """Routes a tool serves itself (GET /docs, /system/*) are listed in its `reserved_routes`,
    so a plugin claiming one fails the check instead of failing at boot."""
    root = make_project(
        {
            "domains/shop/plugins/docs_plugin.py": """
            from microcore import Plugin


            class DocsPlugin(Plugin):
                def __init__(self, http):
                    self.http = http

                async def on_boot(self):
                    self.http.add_endpoint("/docs", "GET", self.page)
                    self.http.add_endpoint("/system/dashboard/{name}", "GET", self.page)
                    self.http.add_endpoint("/fake", "POST", self.page)
                    self.http.add_endpoint("/ignored", "GET", self.page)

                async def page(self, data, context):
                    return {"our": "docs"}
            """,
            "tools/fake/fake_tool.py": """
            from typing import ClassVar

            from microcore import Tool


            class FakeTool(Tool):
                name = "fake"
                reserved_routes: ClassVar[list[str]] = ["POST /fake", "not a route", 1]
                other_routes = ("GET /ignored",)

                def routes(self):
                    return []
            """,
        },
        tools=["config", "logger", "http", "system"],
    )
    collisions = [  # without the tools' line numbers
        re.sub(r"(tools/(?:http|system)/\w+\.py):\d+", r"\1", m.split("; ")[0])
        for m in _messages(root)
        if "collides" in m
    ]
    rel = "domains/shop/plugins/docs_plugin.py"
    assert collisions == [
        f"{rel}:10: route GET /docs collides with GET /docs of HttpTool (tools/http/http_tool.py)",
        f"{rel}:11: route GET /system/dashboard/{{name}} collides with "
        "GET /system/dashboard/{asset} of SystemTool (tools/system/system_tool.py)",
        f"{rel}:12: route POST /fake collides with POST /fake of FakeTool "
        "(tools/fake/fake_tool.py:9)",
    ]
    malformed = [m for m in _messages(root) if "reserved_routes holds" in m]
    assert malformed == [
        f"tools/fake/fake_tool.py:9: FakeTool.reserved_routes holds {item}; list each route "
        "as 'METHOD /path', e.g. 'GET /docs'"
        for item in ("'not a route'", "1")
    ]


def test_reserved_routes_are_the_routes_tools_serve() -> None:
    """Each tool's `reserved_routes` lists exactly the routes it registers in the example app
    (a static declaration must not drift from what the tool really serves)."""
    manifest = anyio.run(describe_project, REPO)
    plugins = {p.identity for p in manifest.plugins}
    served = {
        f"{r.method} {r.path}"
        for r in manifest.routes
        if r.owner not in plugins and r.kind != "static"
    }
    scans, problems = reserved_routes(REPO)
    reserved = {f"{c.method} {c.name}" for scan in scans for c in scan.calls}
    assert problems == []
    assert served == reserved


def test_scan_file_reads_calls_and_docs(make_project: ProjectFactory) -> None:
    """The scan attributes literal calls to their class (or the file's plugin) with docstrings."""
    root = make_project(
        {
            "domains/a/plugins/x_plugin.py": '''
            """Module doc."""
            from microcore import Plugin


            async def announce(bus):
                await bus.publish("a.done", {})


            class XPlugin(Plugin):
                """Class doc."""

                async def on_boot(self):
                    await self.bus.subscribe(pattern="a.*", handler=self.on_a)
                    await self.bus.publish(self.name(), {})
            ''',
            "domains/a/helpers.py": "async def f(bus):\n    await bus.publish('h.x', {})\n",
        },
        tools=[],
    )
    scan = scan_file(root, root / "domains/a/plugins/x_plugin.py")
    assert scan.doc == "Module doc." and scan.docs == {"XPlugin": "Class doc."}
    assert [(c.kind, c.name, c.owner) for c in scan.calls] == [
        ("publish", "a.done", "XPlugin"),
        ("subscribe", "a.*", "XPlugin"),
    ]
    helper = scan_file(root, root / "domains/a/helpers.py")
    assert [(c.name, c.owner) for c in helper.calls] == [("h.x", "helpers")]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.b", "a.c", False),
        ("a.b.c", "a.b", False),
    ],
)
def test_pattern_matches_tokens(pattern: str, name: str, matches: bool) -> None:
    """`*` matches one token and `>` one or more trailing tokens."""
    assert pattern_matches(pattern, name) is matches


def test_normalize_path_ignores_parameter_names() -> None:
    """Paths differing only in parameter names normalize alike; convertors still count."""
    assert normalize_path("/a/{id:int}") == normalize_path("/a/{x:int}") == "/a/{:int}"
    assert normalize_path("/a/{name}") == "/a/{:str}"
    assert normalize_path("/a/{x:int}") != normalize_path("/a/{x:str}")


def test_check_allows_public_tool_types_and_refuses_private_tool_modules(
    make_project: ProjectFactory,
) -> None:
    """A plugin imports a tool's public types from its package (`from tools.http import
    Http`); a private module of a tool (`tools.http._app`, `tools.db.db_tool`) is refused,
    naming file and line."""
    root = make_project(
        {
            "domains/shop/plugins/typed_plugin.py": """
            from tools.http import Http
            from tools.http._app import HttpApp
            from tools.db.db_tool import DbTool
            import tools.state._memory
            from microcore import Plugin


            class TypedPlugin(Plugin):
                def __init__(self, http: Http) -> None:
                    self.http = http
            """,
        },
        tools=[],
    )
    assert _messages(root) == [
        f"domains/shop/plugins/typed_plugin.py:{line}: plugin imports {module!r}, a private "
        f"module of the {tool} tool; import the tool's public types from its package "
        f"instead, e.g. 'from tools.{tool} import ...'"
        for line, module, tool in (
            (3, "tools.http._app", "http"),
            (4, "tools.db.db_tool", "db"),
            (5, "tools.state._memory", "state"),
        )
    ]


def test_check_reports_a_tool_file_that_cannot_be_imported(make_project: ProjectFactory) -> None:
    """A tool file that fails to import is a finding naming it (its reserved routes are
    unknown), not a crash of the check."""
    root = make_project({"tools/bad/bad_tool.py": "raise ImportError('no driver')\n"}, tools=[])
    assert _messages(root) == [
        "tools/bad/bad_tool.py:1: tool file cannot be imported (ImportError: no driver); "
        "microcore check reads each tool's reserved_routes from its class: fix the import"
    ]


SIDECAR = """
doc = "Prices, in JavaScript."
command = ["node", "price.js"]

[declares]
routes = ["GET /prices/{cents:int}"]
responds = ["price.quote"]
subscribes = ["item.*"]
publishes = ["price.changed"]
requests = ["stock.level"]
"""

ASKER = """
from microcore import Plugin


class AskPlugin(Plugin):
    def __init__(self, http, event_bus):
        self.http, self.bus = http, event_bus

    async def on_boot(self):
        self.http.add_endpoint("/prices/{id:int}", "GET", self.get)

    async def get(self, data, context):
        return await self.bus.request("price.quote", {})
"""


def test_check_reads_sidecar_declarations(make_project: ProjectFactory) -> None:
    """A request a sidecar declares it answers has a responder; what a sidecar requests needs
    one; a route it declares collides like a Python one."""
    root = make_project(
        {
            "domains/shop/plugins/ask_plugin.py": ASKER,
            "domains/shop/plugins/price.sidecar.toml": SIDECAR,
        },
        tools=[],
    )
    findings = [str(f) for f in check_project(root)[0]]
    assert findings == [
        "domains/shop/plugins/price.sidecar.toml:6: route GET /prices/{cents:int} collides with "
        "GET /prices/{id:int} of AskPlugin (domains/shop/plugins/ask_plugin.py:10); change one "
        "path or method (parameter names do not make paths different)",
        "domains/shop/plugins/price.sidecar.toml:10: request 'stock.level' has no responder: "
        "nothing subscribes to it; add a plugin that does "
        "'await self.bus.subscribe('stock.level', self.on_request)' and returns the reply",
    ]


def test_check_reports_a_broken_sidecar_declaration(make_project: ProjectFactory) -> None:
    """An unreadable declaration, an unknown [declares] key, a list that is not one of
    strings and a route without a method are findings naming the file."""
    cases = {
        "a": "command = [",
        "b": "command = 'x'\n[declares]\nroute = []\n",
        "c": "command = 'x'\n[declares]\nroutes = 'GET /x'\n",
        "d": "command = 'x'\n[declares]\nroutes = [\n  \"/nomethod\",\n]\n",
    }
    root = make_project(
        {f"domains/shop/plugins/{k}.sidecar.toml": v for k, v in cases.items()}, tools=[]
    )
    findings = {f.file.split("/")[-1]: (f.line, f.message) for f in check_project(root)[0]}
    assert findings["a.sidecar.toml"][1].startswith("cannot be read: ")
    assert "may only hold lists named routes, subscribes" in findings["b.sidecar.toml"][1]
    assert (
        findings["c.sidecar.toml"][1] == "declares.routes must be a list of strings, got 'GET /x'"
    )
    assert findings["d.sidecar.toml"] == (
        4,
        "declares.routes holds '/nomethod'; write 'METHOD /path'",
    )
