"""AI_CONTEXT.md: generated from the running app, deterministic and compact."""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
import pytest

from microcore import Tool
from microcore._core.ownership import Owner
from microcore._dev.introspect import compact_schema, public_members, signature_of
from microcore._dev.manifest import Route, _without_route, describe_project, generate, render
from microcore.testing import start_app
from tests.conftest import ProjectFactory

REPO = Path(__file__).resolve().parents[2]

WEB_TOOL = '''
import msgspec
from microcore import Tool
from microcore.tooling import RouteKind, ServedRoute


class Item(msgspec.Struct):
    name: str


class WebHandle:
    """Register routes (a fake http tool)."""

    def __init__(self, owner):
        self.owner = owner

    def add(self, method: str, path: str) -> None:
        """Serve ``method path``.

        Not in the manifest: only the first paragraph is.
        """
        self.owner.own("route", f"{method} {path}", lambda: None)


class WebTool(Tool):
    """Serves the web."""

    name = "web"

    def bind(self, owner) -> WebHandle:
        return WebHandle(owner)

    def routes(self):
        """Not shown: plugins receive the handle."""
        return [
            ServedRoute(kind=RouteKind.ENDPOINT, label="POST /items", method="POST",
                        path="/items", owner="shop.AddPlugin", status_code=201,
                        summary="Add an item", request_model=Item, response_model=list[Item]),
            ServedRoute(kind=RouteKind.ENDPOINT, label="GET /ping", method="GET", path="/ping",
                        owner="tools.web"),
            ServedRoute(kind=RouteKind.STATIC, label="/files", path="/files", owner="tools.web"),
            ServedRoute(kind=RouteKind.MIDDLEWARE, label="mw", owner="shop.AddPlugin"),
            ServedRoute(kind=RouteKind.WEBSOCKET, label="/ws", path="/ws", owner="shop.AddPlugin"),
            ServedRoute(kind=RouteKind.SSE, label="GET /feed", method="GET", path="/feed",
                        owner="shop.AddPlugin"),
        ]
'''

BUS_TOOL = '''
from microcore import Tool


class BusHandle:
    def __init__(self, owner):
        self.owner = owner

    async def subscribe(self, pattern, handler):
        """Call ``handler`` for matching events."""
        self.owner.own("subscription", pattern, lambda: None)

    async def publish(self, name, payload):
        """Publish an event."""

    async def request(self, name, payload):
        """Ask for a reply."""


class BusTool(Tool):
    name = "bus"

    def bind(self, owner) -> BusHandle:
        return BusHandle(owner)
'''

KIT_TOOL = '''
from microcore import Tool

_SENTINEL = object()


class KitTool(Tool):
    """A kit of small things.

    The second paragraph stays out of the manifest.
    """

    name = "kit"
    LIMIT = 3

    def bind(self, owner) -> "NotDefinedAnywhere":  # unresolvable: the tool documents itself
        return self

    @property
    def ready(self) -> bool:
        """Whether it is ready."""
        return True

    @staticmethod
    def make(size: int = 1) -> "KitTool":
        """Make one."""

    @classmethod
    def build(cls, *, fast=False):
        """Build one."""

    async def fetch(self, key, default=_SENTINEL):
        """Fetch ``key``."""

    def _hidden(self):
        """Never shown."""

    def undocumented(self, x: int) -> None:
        pass
'''

BROKEN_TOOL = """
from microcore import Tool


class BrokenTool(Tool):
    name = "broken"

    async def setup(self):
        raise RuntimeError("cannot connect")
"""

PLUGINS = {
    "domains/shop/models.py": """
    import msgspec


    class NewItem(msgspec.Struct):
        name: str
        tags: list[str] = []
    """,
    "domains/shop/plugins/add_plugin.py": '''
    """Adds items and announces them."""
    from domains.shop.models import NewItem
    from microcore import Plugin


    class AddPlugin(Plugin):
        def __init__(self, web, bus, kit=None):
            self.web, self.bus = web, bus

        async def on_boot(self):
            self.web.add("POST", "/items")
            await self.bus.subscribe("stock.*", self.on_stock)

        async def execute(self, data, context):
            await self.bus.publish("item.added", {})
            return await self.bus.request("price.quote", {})

        async def on_stock(self, event):
            pass
    ''',
    "domains/shop/plugins/price_plugin.py": '''
    from microcore import Plugin


    class PricePlugin(Plugin):
        """Answers price quotes."""

        def __init__(self, bus):
            self.bus = bus

        async def on_boot(self):
            await self.bus.subscribe("price.quote", self.quote)

        async def quote(self, event):
            return {"price": 1}
    ''',
    "domains/shop/plugins/audit_plugin.py": """
    from microcore import Plugin


    class AuditPlugin(Plugin):
        def __init__(self, bus):
            self.bus = bus

        async def on_boot(self):
            await self.bus.subscribe("item.>", self.on_item)

        async def on_item(self, event):
            pass
    """,
    "domains/shop/plugins/fail_plugin.py": """
    from microcore import Plugin


    class FailPlugin(Plugin):
        def __init__(self, payments):
            self.payments = payments
    """,
    "domains/misc/models.py": "LIMIT = 3\n",
    "domains/misc/plugins/noop_plugin.py": """
    from domains.misc.models import LIMIT
    from microcore import Plugin


    class NoOpPlugin(Plugin):
        pass
    """,
    "domains/shop/migrations/001_init.sql": """
    -- items; a comment with a ; semicolon
    CREATE TABLE items (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL,  /* block comment */
        qty  INTEGER CHECK (qty >= 0)
    );
    CREATE TABLE IF NOT EXISTS "tags" (name TEXT);
    CREATE INDEX items_name ON items (name);
    """,
    "domains/shop/migrations/002_more.sql": """
    ALTER TABLE items ADD COLUMN price REAL NOT NULL DEFAULT 0;
    ALTER TABLE missing ADD COLUMN x INTEGER;
    DROP TABLE IF EXISTS tags;
    """,
    "pyproject.toml": '[project]\nname = "shop-app"\n',
}


def shop(make_project: ProjectFactory) -> Path:
    files = {
        "tools/web/web_tool.py": WEB_TOOL,
        "tools/bus/bus_tool.py": BUS_TOOL,
        "tools/kit/kit_tool.py": KIT_TOOL,
        "tools/broken/broken_tool.py": BROKEN_TOOL,
        **PLUGINS,
    }
    root: Path = make_project(files, tools=[])
    return root


def test_generate_twice_is_byte_identical(make_project: ProjectFactory) -> None:
    """Two generations give the same bytes, free of absolute paths."""
    root = shop(make_project)
    first = anyio.run(generate, root)
    second = anyio.run(generate, root)
    assert first == second
    assert str(root) not in first
    assert first.startswith("# AI_CONTEXT.md: shop-app\n")


def test_manifest_tools_show_what_plugins_call(make_project: ProjectFactory) -> None:
    """Tools list public methods with signatures and first doc paragraphs (handles for bind)."""
    text = anyio.run(generate, shop(make_project))
    tools = text[text.index("## Tools") : text.index("## Domains")]
    assert "### web\nRegister routes (a fake http tool).\n" in tools
    assert "- `add(method: str, path: str)`: Serve `method path`." in tools  # no `-> None`
    assert "routes()" not in tools and "Not in the manifest" not in tools
    assert "### kit\nA kit of small things.\n" in tools
    assert "- `ready (property)`: Whether it is ready." in tools
    assert "- `make(size: int = 1) -> KitTool`: Make one." in tools
    assert "- `build(*, fast=False)`: Build one." in tools
    assert "- `async fetch(key, default=<object object>)`: Fetch `key`." in tools
    assert "- `undocumented(x: int)`\n" in tools
    assert "LIMIT" not in tools and "_hidden" not in tools and "setup" not in tools
    assert (
        "### broken\nFAILED: tools/broken/broken_tool.py:9: RuntimeError: cannot connect" in tools
    )
    assert "### bus\n- `async subscribe(pattern, handler)`" in tools


def test_manifest_domains_plugins_and_models(make_project: ProjectFactory) -> None:
    """Each plugin shows its doc and tools (its file only when not named after the class);
    failures show."""
    text = anyio.run(generate, shop(make_project))
    domains = text[text.index("## Domains") : text.index("## Endpoints")]
    assert "### shop\nModels: `NewItem{name: str, tags?: [str]}`" in domains
    assert "- `AddPlugin` (web, bus, kit): Adds items and announces them. `" in domains
    assert "- `PricePlugin` (bus): Answers price quotes." in domains
    assert "- `FailPlugin` (payments)\n  FAILED: domains/shop/plugins/fail_plugin.py:" in domains
    assert "needs tool 'payments', which is not registered" in domains
    assert "### misc\n- `NoOpPlugin` (`plugins/noop_plugin.py`; no tools)" in domains


def test_manifest_endpoints_with_schemas(make_project: ProjectFactory) -> None:
    """A plugin's endpoints are on its line with status and compact schemas; the tools'
    routes fit on one line."""
    text = anyio.run(generate, shop(make_project))
    domains = text[text.index("## Domains") : text.index("## Endpoints")]
    assert (
        "(web, bus, kit): Adds items and announces them. `GET /feed` [sse]; "
        "`POST /items` 201 `Item{name: str}` -> `[Item{name: str}]`; `WS /ws` [websocket]\n"
    ) in domains
    endpoints = text[text.index("## Endpoints") : text.index("## Events")]
    assert "## Endpoints served by tools\n\n`GET /ping`\n" in endpoints
    assert "/files" not in text


def test_manifest_events_requests_and_tables(make_project: ProjectFactory) -> None:
    """Events name publishers and subscribers (a pattern under the names it matches, or on
    its own when it matches none); requests their responders."""
    text = anyio.run(generate, shop(make_project))
    events = text[text.index("## Events") : text.index("## Requests")]
    assert (
        "- `item.added`: published by shop.AddPlugin; handled by shop.AuditPlugin (via item.>)"
    ) in events
    assert "- `item.>`" not in events
    assert "- `stock.*`: published by none; handled by shop.AddPlugin" in events
    assert "price.quote" not in events
    requests = text[text.index("## Requests") : text.index("## Tables")]
    assert "- `price.quote`: requested by shop.AddPlugin; answered by shop.PricePlugin" in requests
    tables = text[text.index("## Tables") :]
    assert (
        "- `items` (`domains/shop/migrations/001_init.sql`): id INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, qty INTEGER CHECK (qty >= 0), price REAL NOT NULL DEFAULT 0"
    ) in tables
    assert "tags" not in tables and "missing" not in tables


def test_manifest_credits_a_helper_class_publish_to_the_plugin(
    make_project: ProjectFactory,
) -> None:
    """A publish made by a helper class in the plugin's file is listed under the plugin,
    and the event shows that plugin as its publisher."""
    root = make_project(
        {
            "domains/shop/plugins/notify_plugin.py": """
            from microcore import Plugin


            class _Announcer:
                def __init__(self, bus):
                    self.bus = bus

                async def created(self, item_id):
                    await self.bus.publish("item.created", {"id": item_id})


            class NotifyPlugin(Plugin):
                def __init__(self, event_bus):
                    self.announce = _Announcer(event_bus)

                async def on_boot(self):
                    pass
            """,
        },
        tools=["config", "logger", "event_bus"],
    )
    text = anyio.run(generate, root)
    assert "- `NotifyPlugin` (event_bus)\n" in text
    assert "- `item.created`: published by shop.NotifyPlugin; handled by none" in text


def test_manifest_of_an_empty_project(make_project: ProjectFactory) -> None:
    """A project without tools, plugins or migrations still renders every section."""
    root = make_project({"domains/__init__.py": "", "pyproject.toml": "not toml ["}, tools=[])
    text = anyio.run(generate, root)
    assert text.startswith("# AI_CONTEXT.md: this project\n")
    assert "0 tools, 0 plugins, 0 endpoints, 0 events, 0 request names, 0 tables." in text
    for section in (
        "## Endpoints served by tools",
        "## Events",
        "## Requests (request/reply)",
        "## Tables",
    ):
        assert f"{section}\n\nnone" in text


def test_manifest_of_the_example_lists_everything() -> None:
    """The example app's manifest lists every tool method, endpoint and published event."""
    text = anyio.run(generate, REPO)
    manifest = anyio.run(describe_project, REPO)
    assert render(manifest) == text
    for tool in manifest.tools:
        assert tool.error is None and f"### {tool.name}" in text
        for method in tool.methods:  # neighbours that differ only in their name share a line
            signature = method.signature.removesuffix(" -> None")
            name, _, params = signature.partition("(")
            bare = name.removeprefix("async ")
            shared = re.search(rf"- `(async )?[\w/]*\b{bare}\b[\w/]*\({re.escape(params)}`", text)
            assert f"- `{signature}`" in text or shared
    assert "- `debug/info/warning/error(msg: str, **fields)`: Log at that level.\n" in text
    plugins = {p.identity for p in manifest.plugins}
    for route in manifest.routes:
        if route.owner in plugins:
            assert f"`{route.method} {route.path}`" in text
    for plugin in manifest.plugins:
        assert plugin.error is None
        for name in plugin.publishes:
            assert f"- `{name}`" in text
    # said once: the route a docstring starts with is on the endpoint line; a Transaction's
    # db methods are the db tool's; a model field of a tool type is named by that type
    assert "- `CreateProductPlugin` (http, db, event_bus, logger): Validate, insert, " in text
    assert "`POST /products` 201 `NewProduct` -> `Product`" in text
    assert "`open`; `after_commit(callback)`" in text and "query_one(sql, params=())" not in text
    assert "`NewAvatar{user_id: int, image: UploadFile}`" in text
    assert "- `product.created` `Product`: published by products.CreateProductPlugin; " in text
    assert (
        "- `product.get` `ProductId` -> `Product | null`: requested by none; "
        "answered by products.GetProductPlugin"
    ) in text
    assert "products.LiveProductsPlugin (via product.*, broadcast)" in text


@pytest.mark.xfail(
    strict=True,
    reason="issue #15's budget (16,000 characters) is not met since the example app gained "
    "the users domain (#18), a sidecar (#21) and a job (#19): about 18,300 after compaction; "
    "strict, so meeting it fails this mark and the mark goes",
)
def test_manifest_of_the_example_fits_its_budget() -> None:
    """AI_CONTEXT.md of the example app stays under the 16,000 characters #15 set for it."""
    assert len(anyio.run(generate, REPO)) < 16_000


async def test_manifest_probe_leaves_plugins_alone(make_project: ProjectFactory) -> None:
    """Describing a running app does not register anything for the probe owner."""
    root = shop(make_project)
    running = await start_app(root)
    try:
        before = running.kernel.status().plugins
        from microcore._dev.manifest import describe

        describe(running.kernel)
        assert running.kernel.status().plugins == before
    finally:
        await running.stop()


class Point(msgspec.Struct):
    x: int
    y: int = 0


class Node(msgspec.Struct):
    value: int
    child: Node | None = None


class Empty(msgspec.Struct):
    pass


class Shape(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    code: Annotated[str, msgspec.Meta(pattern="^[A-Z]+$")]
    short: Annotated[str, msgspec.Meta(max_length=5)]
    when: datetime.date
    price: Annotated[float, msgspec.Meta(gt=0, lt=10)]
    count: Annotated[int, msgspec.Meta(ge=0, le=5)]
    flag: bool
    kind: Literal["a", "b"]
    pair: tuple[int, str]
    scores: dict[str, int]
    extra: dict[str, Any]
    anything: Any
    points: list[Point]
    maybe: str | None = None


def test_compact_schema_shapes() -> None:
    """Constraints, optionals, unions, containers and recursion fit on one line."""
    assert compact_schema(Shape) == (
        "Shape{name: str(1..20), code: str(/^[A-Z]+$/), short: str(0..5), "
        "when: str(date), price: float>0<10, count: int>=0<=5, flag: bool, "
        'kind: "a" | "b", pair: (int, str), scores: {str: int}, extra: object, anything: any, '
        "points: [Point{x: int, y?: int}], maybe?: str | null}"
    )
    assert compact_schema(Node) == "Node{value: int, child?: Node | null}"
    assert compact_schema(Empty) == "Empty{}"
    assert compact_schema(list[Point]) == "[Point{x: int, y?: int}]"
    assert compact_schema(frozenset) == "[any]"
    assert compact_schema(object) == "object"
    assert compact_schema(Owner) == "Owner"
    assert compact_schema(Holder) == "Holder{blob: Opaque, blobs: [Opaque]}"


def test_compact_schema_names_a_type_msgspec_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever msgspec's schema generator refuses is shown by its name, never raised."""

    def refuse(tp: Any, **options: Any) -> dict[str, Any]:
        raise TypeError("not a type msgspec supports")

    monkeypatch.setattr(msgspec.json, "schema", refuse)
    assert compact_schema(Point) == "Point"


def test_a_docstring_keeps_a_route_its_plugin_does_not_serve() -> None:
    """The ``POST /x: `` a docstring starts with goes only when it is the plugin's own route."""
    served = [Route("POST", "/orders/{order_id:int}", "shop.P", status_code=201)]
    assert _without_route("POST /orders/{order_id}: place one.", served) == "Place one."
    assert _without_route("GET /orders: list them.", served) == "GET /orders: list them."
    assert _without_route("Places orders.", served) == "Places orders."


class Opaque:
    """A type msgspec cannot describe (a tool's ``UploadFile``, say)."""


class Holder(msgspec.Struct):
    blob: Opaque
    blobs: list[Opaque]


def test_signature_of_without_self() -> None:
    """Signatures drop self, show annotations as written and tolerate builtins."""

    class Demo(Tool):
        def run(self, a: int, *, b: str = "x") -> list[int]:
            return []

    assert signature_of(Demo.run) == "(a: int, *, b: str = 'x') -> list[int]"
    assert signature_of(int) == "(...)"
    assert signature_of(len, skip_first=False) == "(obj, /)"
    assert [m.signature for m in public_members(Demo, skip=vars(Tool))] == [
        "run(a: int, *, b: str = 'x') -> list[int]"
    ]


def test_members_say_callables_by_name_and_sphinx_roles_by_their_last_name() -> None:
    """A handler parameter shows as its name (its sentence says its shape); a Sphinx role in
    a docstring shows as the name it points at."""

    class Demo(Tool):
        def add(self, path: str, handler: Callable[[Any, Any], Awaitable[Any]]) -> None:
            """Serve ``path`` with ``async def handler(data, context)``; raises
            :class:`~tools.http.HttpError` when taken. More."""

    [method] = public_members(Demo, skip=vars(Tool))
    assert method.signature == "add(path: str, handler) -> None"
    assert method.doc == (
        "Serve `path` with `async def handler(data, context)`; raises `HttpError` when taken."
    )


SIDECAR = """
doc = "Prices, in JavaScript."
command = ["node", "price.js"]

[declares]
routes = ["GET /prices/{cents:int}"]
responds = ["price.format", "price.*"]
subscribes = ["item.added"]
publishes = ["price.changed"]
requests = ["price.quote"]
"""


def test_manifest_lists_sidecars_from_their_declarations(make_project: ProjectFactory) -> None:
    """A sidecar shows under its domain, its declared routes among
    the endpoints, what it publishes among the events and what it answers among the
    requests, whether or not its program runs; a broken declaration shows FAILED."""
    root = shop(make_project)
    (root / "domains/shop/plugins/price.sidecar.toml").write_text(SIDECAR)
    (root / "domains/shop/plugins/bad.sidecar.toml").write_text("command = [")
    text = anyio.run(generate, root)
    assert (
        "- `price` (`plugins/price.sidecar.toml`; sidecar): Prices, in JavaScript. "
        "`GET /prices/{cents:int}`\n"
    ) in text
    assert "- `bad` (`plugins/bad.sidecar.toml`; sidecar)\n  FAILED: cannot be read" in text
    events = text[text.index("## Events") : text.index("## Requests")]
    # a responder answers requests only: price.* does not handle the event price.changed
    assert "- `price.changed`: published by shop.price; handled by none" in events
    assert "handled by shop.AuditPlugin (via item.>), shop.price" in events
    assert "price.format" not in events
    requests = text[text.index("## Requests") : text.index("## Tables")]
    assert "- `price.format`: requested by none; answered by shop.price" in requests
    assert "requested by shop.AddPlugin, shop.price; answered by shop.PricePlugin" in requests


TYPED = {
    "domains/shop/models.py": """
    import msgspec


    class Quote(msgspec.Struct):
        price: float
    """,
    "domains/shop/plugins/ask_plugin.py": """
    import msgspec
    from domains.shop.models import Quote
    from microcore import Plugin


    class Local(msgspec.Struct):
        a: int


    class AskPlugin(Plugin):
        def __init__(self, event_bus):
            self.bus = event_bus

        async def on_boot(self):
            await self.bus.publish("x.made", Local(a=1))

        async def ask(self, data: "Quote", other: "not valid("):
            await self.bus.request("price.quote", data, reply=Quote)
            await self.bus.publish("x.other", other)
            await self.bus.publish("x.plain", {})
            from domains.shop.lazy import Lazy

            await self.bus.publish("x.lazy", Lazy())
    """,
    "domains/shop/plugins/answer_plugin.py": """
    from microcore import Plugin


    class AnswerPlugin(Plugin):
        def __init__(self, event_bus):
            self.bus = event_bus

        async def on_boot(self):
            await self.bus.subscribe("price.quote", self.quote, retries=2)

        async def quote(self, event):
            return None
    """,
}


def test_manifest_shapes_from_the_source(make_project: ProjectFactory) -> None:
    """Payload and reply shapes come from the publisher's source when no handler declares
    them: a domain model by name, another class in full, one the app did not import (yet)
    by its bare name."""
    text = anyio.run(generate, make_project(TYPED, tools=["config", "logger", "event_bus"]))
    assert "- `x.made` `Local{a: int}`: published by shop.AskPlugin; handled by none" in text
    assert "- `x.lazy` `Lazy`: published by shop.AskPlugin" in text
    assert "- `x.other`: published by shop.AskPlugin" in text
    assert "- `x.plain`: published by shop.AskPlugin" in text
    assert (
        "- `price.quote` `Quote` -> `Quote`: requested by shop.AskPlugin; "
        "answered by shop.AnswerPlugin (retries 2)"
    ) in text
