"""microcore new and microcore add plugin: generated code runs and passes its own tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from microcore import __version__
from microcore._dev.bundle import BundleError, bundle_files, bundle_root, requirement
from microcore._dev.checks import check_project
from microcore._dev.cli import main
from microcore._dev.scaffold import PluginShape, add_plugin, new_project
from microcore._dev.upgrade import read_lock
from microcore.testing import start_app
from microcore.tooling import ConfigurationError
from tests.conftest import ProjectFactory

REPO = Path(__file__).resolve().parents[2]

PYTEST_CONFIG = """
[tool.pytest.ini_options]
addopts = "--import-mode=importlib -p no:cacheprovider"
pythonpath = ["."]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
filterwarnings = ["error"]
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=200
    )


@pytest.mark.timeout(240)  # subprocesses: ruff and pytest on the generated files
async def test_add_plugin_output_boots_and_passes_its_test(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """add plugin writes a typed plugin that serves its route, a test that passes as
    generated, and for a new domain its models.py and first migration (both dialects)."""
    root = make_project({"pyproject.toml": PYTEST_CONFIG}, tools=["config", "logger", "http"])
    assert main(["add", "plugin", "orders", "archive_order_plugin", "--root", str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "created domains/orders/plugins/archive_order_plugin.py",
        "created tests/domains/orders/test_archive_order_plugin.py",
        "created domains/orders/models.py",
        "created domains/orders/migrations/001_create_orders.sql",
        "created domains/orders/migrations/001_create_orders.postgresql.sql",
    ]
    plugin = (root / "domains/orders/plugins/archive_order_plugin.py").read_text()
    assert "class ArchiveOrderPlugin(Plugin):" in plugin
    assert plugin.startswith('"""GET /orders/archive-order: Archive order.')
    assert "within the 100-character line limit" in plugin
    assert "-> ArchiveOrderResponse:" in plugin
    assert (root / "domains/orders/__init__.py").is_file()
    sql = (root / "domains/orders/migrations/001_create_orders.sql").read_text()
    assert "001_create_orders.postgresql.sql" in sql and "INTEGER PRIMARY KEY" in sql
    postgres = (root / "domains/orders/migrations/001_create_orders.postgresql.sql").read_text()
    assert "instead of" in postgres and "SERIAL" in postgres
    assert main(["add", "plugin", "orders", "cancel_order", "--root", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "updated domains/orders/models.py"
    tests = run(["pytest", "-q", "tests/domains/orders"], root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout, tests.stdout
    _lints_clean(root)
    assert check_project(root)[0] == []
    running = await start_app(root)
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/orders/archive-order")
        assert response.json() == {"ok": True}
        assert running.kernel.status().plugins["orders.CancelOrderPlugin"].status == "ok"
    finally:
        await running.stop()


def _lints_clean(root: Path) -> None:
    generated = ["domains", "tests"]
    config = ["--config", str(REPO / "pyproject.toml")]
    lint = run(["ruff", "check", *config, *generated], root)
    assert lint.returncode == 0, lint.stdout
    fmt = run(["ruff", "format", "--check", *config, *generated], root)
    assert fmt.returncode == 0, fmt.stdout


@pytest.mark.timeout(240)  # subprocesses: ruff and pytest on the generated files
async def test_add_plugin_shapes_route_models_and_events(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """--route with a path parameter, --publishes and --subscribe: typed plugins whose
    generated tests pass; the PATCH route decodes its path parameter into the model."""
    models = textwrap.dedent(
        """\
        from __future__ import annotations


        class Kept:
            pass
        """
    )
    root = make_project(
        {"pyproject.toml": PYTEST_CONFIG, "domains/products/models.py": models},
        tools=["config", "logger", "http", "event_bus"],
    )
    (root / "domains/products/migrations").mkdir()
    args = ["add", "plugin", "products", "update_product", "--root", str(root)]
    route = ["--route", "patch /products/{product_id:int}"]
    events = ["--publishes", "product.updated", "--publishes", "product.changed"]
    assert main([*args, *route, *events]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "updated domains/products/models.py"
    text = (root / "domains/products/models.py").read_text()
    assert "import msgspec" in text and "class Kept:" in text
    assert "class UpdateProductRequest(msgspec.Struct, forbid_unknown_fields=True):" in text
    assert "    product_id: int\n" in text
    assert not list((root / "domains/products/migrations").iterdir())  # the domain had one
    subscriber = ["--subscribe", "product.*", "--publishes", "audit.recorded"]
    assert main(["add", "plugin", "audit", "record", *subscriber, "--root", str(root)]) == 0
    plugin = (root / "domains/audit/plugins/record_plugin.py").read_text()
    assert plugin.startswith('"""On product.*: Record.')
    assert "async def on_product(self, event: Event) -> None:" in plugin
    assert "http" not in plugin
    long_route = "GET /products/{product_id:int}/a/long/path/{line:str}/{rest:path}/{ratio:float}"
    shown = ["--route", long_route, "--request", "ShowTheProductLineRequest"]
    shown += ["--response", "ShowTheProductLineResponseModelOfSomeLength"]
    assert (
        main(["add", "plugin", "products", "show_the_product_line", *shown, "--root", str(root)])
        == 0
    )
    shown_plugin = (root / "domains/products/plugins/show_the_product_line_plugin.py").read_text()
    assert shown_plugin.startswith('"""Show the product line.')  # the route made it too long
    tests = run(["pytest", "-q", "tests/domains"], root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout, tests.stdout
    _lints_clean(root)
    running = await start_app(root)
    try:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.patch("/products/7")
            refused = await client.patch("/products/7", json={"unknown": 1})
        assert response.json() == {"ok": True}
        assert refused.status_code == 422
        assert running.kernel.status().plugins["audit.RecordPlugin"].status == "ok"
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--route", "FETCH /x"], "--route 'FETCH /x' is not 'METHOD /path'"),
        (["--route", "GET x"], "--route 'GET x' is not 'METHOD /path'"),
        (["--route", "GET /x/{id:uuid}"], "the path parameter type 'uuid' is not one of"),
        (["--request", "lower"], "--request 'lower' is not a model name"),
        (["--response", "Stored"], "--response Stored: domains/shop/models.py's Stored has"),
        (["--subscribe", "a..b"], "pattern 'a..b'"),
        (["--publishes", "a.*"], "name 'a.*'"),
    ],
)
def test_add_plugin_refuses_bad_shapes(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    """A malformed route, model or event name is one line naming it; nothing is written."""
    models = "import msgspec\n\n\nclass Stored(msgspec.Struct):\n    id: int\n    ok: bool = True\n"
    root = make_project({"domains/shop/models.py": models}, tools=[])
    assert main(["add", "plugin", "shop", "thing", *args, "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("microcore: error: ") and message in err, err
    assert not (root / "domains/shop/plugins").exists()


def test_add_plugin_needs_msgspec_in_models(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A models.py without msgspec nor a __future__ import to place it after is refused."""
    root = make_project({"domains/shop/models.py": "X = 1\n"}, tools=[])
    assert main(["add", "plugin", "shop", "thing", "--root", str(root)]) == 1
    assert "does not import msgspec; add 'import msgspec'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("domain", "name", "message"),
    [
        ("Orders", "create", "domain 'Orders' is not a valid name"),
        ("orders", "class", "plugin name 'class' is not a valid name"),
        ("orders", "1st", "plugin name '1st' is not a valid name"),
        ("orders", "create", "domains/orders/plugins/create_plugin.py already exists"),
    ],
)
def test_add_plugin_refuses_bad_names_and_existing_files(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    domain: str,
    name: str,
    message: str,
) -> None:
    """Invalid names and existing files are refused with one line and exit status 1."""
    root = make_project({"domains/orders/plugins/create_plugin.py": "# mine\n"}, tools=[])
    assert main(["add", "plugin", domain, name, "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"microcore: error: {message}") and err.count("\n") == 1
    assert (root / "domains/orders/plugins/create_plugin.py").read_text() == "# mine\n"


def test_add_plugin_refuses_existing_test(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing test file is never overwritten either."""
    root = make_project({"tests/domains/orders/test_create_plugin.py": "# mine\n"}, tools=[])
    assert main(["add", "plugin", "orders", "create", "--root", str(root)]) == 1
    assert "tests/domains/orders/test_create_plugin.py already exists" in capsys.readouterr().err
    assert not (root / "domains/orders/plugins/create_plugin.py").exists()


@pytest.mark.timeout(240)  # subprocesses: ruff and pytest on the generated files
def test_new_project_passes_its_own_checks_and_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """new makes a project that passes lint, check, context --check and its own tests."""
    target = tmp_path / "shop-api"
    assert main(["new", str(target)]) == 0
    assert "AI_CONTEXT.md: " in capsys.readouterr().out
    pyproject = (target / "pyproject.toml").read_text()
    assert 'name = "shop-api"' in pyproject
    assert f'dependencies = ["microcore>={__version__},<' in pyproject
    for path in target.rglob("*"):  # by name and version: no path, no file: URL
        if path.is_file():
            text = path.read_text(errors="replace")
            assert str(REPO) not in text and "file://" not in text, path
    for rel in ("app.py", ".env.example", ".gitignore", "tools/http/http_tool.py", "README.md"):
        assert (target / rel).is_file(), rel
    assert not list(target.rglob("__pycache__"))
    assert main(["check", "--root", str(target)]) == 0
    assert main(["context", "--check", "--root", str(target)]) == 0
    for args in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = run(args, target)
        assert result.returncode == 0, result.stdout
    tests = run(["pytest", "-q", "-p", "no:cacheprovider"], target)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout


def test_new_records_the_shipped_tools(tmp_path: Path) -> None:
    """tools.lock.json lists every standard tool file with its hash and this version."""
    target = new_project(tmp_path / "shop")
    lock = read_lock(target)
    assert lock is not None and lock.version == __version__
    shipped = [rel for rel in bundle_files(REPO) if rel.startswith("tools/")]
    assert sorted(lock.files) == shipped
    assert "tools/http/http_tool.py" in lock.files
    assert not any(rel.startswith("domains/") for rel in lock.files)


def test_new_refuses_used_folders_and_bad_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """new never writes into a non-empty folder or a file, and needs a usable project name."""
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("x")
    (tmp_path / "afile").write_text("x")
    assert main(["new", str(tmp_path / "used")]) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["new", str(tmp_path / "afile")]) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["new", str(tmp_path / "bad name!")]) == 1
    assert "'bad name!' cannot be a project name" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["new", str(tmp_path / "empty")]) == 0


def test_new_project_copies_what_the_source_has(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Files the source folder lacks are skipped; templates are always written."""
    source = make_project({"app.py": "app = None\n", "tools/x/y.py": ""}, tools=["config"])
    target = new_project(tmp_path / "mini", source=source, version="1.4.2")
    assert (target / "app.py").read_text() == "app = None\n"
    assert (target / "tools/config/config_tool.py").is_file()
    assert not (target / "tools/x").exists()  # not a tool: no x_tool.py
    assert (target / "Makefile").is_file() and not (target / ".env.example").exists()
    assert not (target / "domains").exists()
    assert '"microcore>=1.4.2,<2"' in (target / "pyproject.toml").read_text()


def test_bundle_comes_from_the_wheel_or_the_checkout(tmp_path: Path) -> None:
    """An installed wheel carries microcore/_bundle; an editable checkout is its own bundle."""
    assert bundle_root() == REPO
    package = tmp_path / "site-packages" / "microcore"
    (package / "_bundle" / "tools").mkdir(parents=True)
    assert bundle_root(package) == package / "_bundle"


@pytest.mark.parametrize(
    "pyproject",
    [None, '[project]\nname = "other"\n', "not toml [", '[project]\nversion = "1"\n'],
)
def test_bundle_missing_says_how_to_get_one(tmp_path: Path, pyproject: str | None) -> None:
    """Neither a bundle nor a microcore checkout: the error says how to install one."""
    (tmp_path / "tools").mkdir()
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    with pytest.raises(BundleError, match="carries no project bundle"):
        bundle_root(tmp_path / "microcore")


def test_new_without_a_bundle_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """microcore new from a microcore without a bundle fails with one line, no traceback."""
    from microcore._dev import scaffold

    def missing() -> Path:
        raise BundleError("this microcore carries no project bundle")

    monkeypatch.setattr(scaffold, "bundle_root", missing)
    assert main(["new", str(tmp_path / "shop")]) == 1
    err = capsys.readouterr().err
    assert err == "microcore: error: this microcore carries no project bundle\n"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.2.0", "microcore>=0.2.0,<0.3"),
        ("0.10.3", "microcore>=0.10.3,<0.11"),
        ("1.4.2", "microcore>=1.4.2,<2"),
        ("2.0.0rc1", "microcore>=2.0.0rc1,<3"),
    ],
)
def test_requirement_allows_what_semver_says_is_compatible(version: str, expected: str) -> None:
    """The dependency stops before the next version that may break the project."""
    assert requirement(version) == expected


def test_requirement_needs_a_version() -> None:
    """A version that is not MAJOR.MINOR... is refused."""
    with pytest.raises(BundleError, match=r"'dev' is not MAJOR\.MINOR\.PATCH"):
        requirement("dev")


@pytest.mark.timeout(240)  # subprocesses: ruff and pytest on the generated files
def test_add_plugin_uses_models_the_domain_has(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Models named by flags that exist are used as they are; a route and a subscription
    in one plugin each get their handler and their tests."""
    models = (
        "import msgspec\n\n\nclass Query(msgspec.Struct):\n    q: str = ''\n\n\n"
        "class Page(msgspec.Struct):\n    ok: bool = True\n"
    )
    root = make_project(
        {"pyproject.toml": PYTEST_CONFIG, "domains/shop/models.py": models},
        tools=["config", "logger", "http", "event_bus"],
    )
    (root / "domains/shop/migrations").mkdir()
    flags = ["--route", "GET /shop/search", "--request", "Query", "--response", "Page"]
    flags += ["--subscribe", "shop.changed"]
    assert main(["add", "plugin", "shop", "search", *flags, "--root", str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "created domains/shop/plugins/search_plugin.py",
        "created tests/domains/shop/test_search_plugin.py",
    ]
    assert (root / "domains/shop/models.py").read_text() == models
    plugin = (root / "domains/shop/plugins/search_plugin.py").read_text()
    assert plugin.startswith('"""GET /shop/search: Search.')
    assert "data: Query" in plugin and "async def on_shop_changed(self, event: Event)" in plugin
    tests = run(["pytest", "-q", "tests/domains/shop"], root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout, tests.stdout


def test_new_reports_the_context_it_wrote(
    make_project: ProjectFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """new writes AI_CONTEXT.md for the project it made and says what to run next."""
    from microcore._dev import scaffold

    source = make_project({"app.py": "from microcore import create_app\n\napp = create_app()\n"})
    monkeypatch.setattr(scaffold, "bundle_root", lambda: source)
    assert main(["new", str(tmp_path / "mini")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"created {tmp_path / 'mini'} (AI_CONTEXT.md: ")
    assert out[1] == f"next: cd {tmp_path / 'mini'} && make test    # or: make run"
    assert (tmp_path / "mini/AI_CONTEXT.md").read_text().startswith("#")


@pytest.mark.timeout(240)  # subprocesses: ruff and pytest on the generated files
async def test_add_plugin_respond_writes_a_responder_that_answers_requests(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """--respond NAME: a typed responder (reply model added to models.py) whose generated
    tests pass, that check accepts, and that answers a request in the running app; with
    --route too, the reply gets its own model beside the route's response."""
    root = make_project(
        {"pyproject.toml": PYTEST_CONFIG}, tools=["config", "logger", "http", "event_bus"]
    )
    responder = ["--respond", "price.quote", "--response", "Quote"]
    assert main(["add", "plugin", "pricing", "quote", *responder, "--root", str(root)]) == 0
    assert "created domains/pricing/models.py" in capsys.readouterr().out
    plugin = (root / "domains/pricing/plugins/quote_plugin.py").read_text()
    assert plugin.startswith('"""Answers price.quote: Quote.')
    assert 'await self.bus.respond("price.quote", self.answer_price_quote)' in plugin
    assert "async def answer_price_quote(self, event: Event) -> Quote:" in plugin
    assert "http" not in plugin
    assert "class Quote(msgspec.Struct):" in (root / "domains/pricing/models.py").read_text()
    both = ["--route", "GET /pricing/rates", "--respond", "price.rates"]
    assert main(["add", "plugin", "pricing", "rates", *both, "--root", str(root)]) == 0
    models = (root / "domains/pricing/models.py").read_text()
    assert "class RatesResponse(msgspec.Struct):" in models
    assert "class RatesReply(msgspec.Struct):" in models
    tests = run(["pytest", "-q", "tests/domains"], root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout, tests.stdout
    _lints_clean(root)
    assert [f for f in check_project(root)[0] if "never requested" not in str(f)] == []
    running = await start_app(root)
    try:
        tool: Any = running.kernel.tool("event_bus")
        bus = tool.bind(running.kernel.plugins["pricing.RatesPlugin"].owner)
        reply = await bus.request("price.quote", {})
        assert type(reply).__name__ == "Quote" and msgspec.to_builtins(reply) == {"ok": True}
    finally:
        await running.stop()


def test_add_plugin_respond_returns_a_reply_model_the_domain_has(
    make_project: ProjectFactory,
) -> None:
    """--respond with --response naming an existing model without required fields: the
    responder returns it and models.py is left alone; one with required fields is refused."""
    models = (
        "import msgspec\n\n\nclass Quote(msgspec.Struct):\n    ok: bool = True\n\n\n"
        "class Price(msgspec.Struct):\n    cents: int\n"
    )
    root = make_project({"domains/shop/models.py": models}, tools=["config", "logger"])
    (root / "domains/shop/migrations").mkdir()
    written = add_plugin(
        root, "shop", "quote", PluginShape(respond="price.quote", response="Quote")
    )
    assert (root / "domains/shop/models.py") not in written
    plugin = (root / "domains/shop/plugins/quote_plugin.py").read_text()
    assert "async def answer_price_quote(self, event: Event) -> Quote:" in plugin
    with pytest.raises(ConfigurationError, match="Price has required fields \\(cents\\)"):
        add_plugin(root, "shop", "price", PluginShape(respond="price.get", response="Price"))
