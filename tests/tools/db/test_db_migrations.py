"""Per-domain migrations: applied in order once, checked for changes, failures isolated,
per-database variants; the same on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from microcore.testing import start_app

REPO = Path(__file__).resolve().parents[3]
TOOLS = ["config", "logger", "db", "state"]

PLUGIN = """
from microcore import Plugin

class {name}(Plugin):
    def __init__(self, db):
        self.db = db
"""


def _plugin(domain: str, name: str) -> dict[str, str]:
    return {f"domains/{domain}/plugins/{name.lower()}_plugin.py": PLUGIN.format(name=name)}


async def _tables(db: Any, dialect: Any) -> list[str]:
    return [r["name"] for r in await db.query(dialect.tables_sql)]


@pytest.fixture(params=["file", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """Migrations run on a file and on PostgreSQL, databases that outlive one boot
    (``:memory:`` is new at every boot: its own test is at the end)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return "sqlite:///data/app.db"


async def test_migrations_apply_in_number_order(
    make_project: Callable[..., Path], boot: Any, dialect: Any
) -> None:
    """Files run in number order (10 after 2), so later files can build on earlier ones."""
    root = make_project(
        {
            "domains/shop/migrations/010_add_stock.sql": "ALTER TABLE products ADD stock INT;",
            "domains/shop/migrations/002_products.sql": "CREATE TABLE products (id INTEGER);",
        },
        tools=TOOLS,
    )
    db: Any = (await boot(root)).kernel.tool("db")
    columns = await db.query(dialect.columns_sql, ("products",))
    assert [c["name"] for c in columns] == ["id", "stock"]
    ledger = await db.query("SELECT domain, name FROM _microcore_migrations ORDER BY name")
    assert ledger == [
        {"domain": "shop", "name": "002_products.sql"},
        {"domain": "shop", "name": "010_add_stock.sql"},
    ]


async def test_migrations_are_never_reapplied(
    make_project: Callable[..., Path], boot: Any, dialect: Any
) -> None:
    """A second boot skips applied files and applies only the new one."""
    root = make_project(
        {"domains/shop/migrations/001_products.sql": "CREATE TABLE products (id INTEGER);"},
        tools=TOOLS,
    )
    await (await boot(root)).stop()
    (root / "domains/shop/migrations/002_orders.sql").write_text("CREATE TABLE orders (id INT);")
    db: Any = (await boot(root)).kernel.tool("db")
    assert db.migration_errors == {}
    assert await _tables(db, dialect) == ["_microcore_migrations", "orders", "products"]


SCRIPTS = {
    "sqlite": """
    -- products and their audit trail
    CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT);
    CREATE TABLE audit (note TEXT);
    CREATE TRIGGER products_ai AFTER INSERT ON products BEGIN
        INSERT INTO audit (note) VALUES ('added; ' || new.name);
    END;
    INSERT INTO products (name) VALUES ('seed;pen');
    """,
    "postgresql": """
    -- products and their audit trail; a ? here is no placeholder
    CREATE TABLE products (id SERIAL PRIMARY KEY, name TEXT);
    CREATE TABLE audit (note TEXT);
    CREATE FUNCTION audit_product() RETURNS trigger LANGUAGE plpgsql AS $body$
    BEGIN
        INSERT INTO audit (note) VALUES ('added; ' || NEW.name);  -- a ; in the body
        RETURN NEW;
    END;
    $body$;
    CREATE TRIGGER products_ai AFTER INSERT ON products
        FOR EACH ROW EXECUTE FUNCTION audit_product();
    /* a block comment; with a semicolon */
    INSERT INTO products (name) VALUES ('seed;pen');
    """,
}


async def test_migration_multi_statement_script_with_trigger(
    make_project: Callable[..., Path], boot: Any, dialect: Any
) -> None:
    """A script with comments, string semicolons and a trigger body runs statement by statement."""
    root = make_project(
        {"domains/shop/migrations/001_init.sql": SCRIPTS[dialect.name]}, tools=TOOLS
    )
    db: Any = (await boot(root)).kernel.tool("db")
    assert db.migration_errors == {}
    assert await db.query("SELECT note FROM audit") == [{"note": "added; seed;pen"}]


async def test_migration_changed_after_apply_fails_its_domain(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """Editing an applied file is a boot error naming the file; that domain's plugins fail."""
    files = {
        "domains/shop/migrations/001_products.sql": "CREATE TABLE products (id INTEGER);",
        **_plugin("shop", "ShopPlugin"),
        **_plugin("blog", "BlogPlugin"),
    }
    root = make_project(files, tools=TOOLS)
    await (await boot(root)).stop()
    path = root / "domains/shop/migrations/001_products.sql"
    path.write_text("CREATE TABLE products (id INTEGER, name TEXT);")
    plugins = (await boot(root)).kernel.status().plugins
    assert plugins["blog.BlogPlugin"].status == "ok"
    shop = plugins["shop.ShopPlugin"]
    assert shop.status == "failed"
    assert shop.error.type == "MigrationError"
    assert "001_products.sql was changed after it was applied" in shop.error.message


async def test_migration_line_endings_do_not_count_as_a_change(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """A file re-checked-out with CRLF line endings is not 'changed'."""
    root = make_project({}, tools=TOOLS)
    path = root / "domains/shop/migrations/001_products.sql"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"CREATE TABLE products (\n  id INTEGER\n);\n")
    await (await boot(root)).stop()
    path.write_bytes(b"CREATE TABLE products (\r\n  id INTEGER\r\n);\r\n")
    db: Any = (await boot(root)).kernel.tool("db")
    assert db.migration_errors == {}


async def test_failing_migration_fails_only_its_domain(
    make_project: Callable[..., Path], boot: Any, dialect: Any
) -> None:
    """A SQL error fails that domain's plugins with the error; other domains boot and migrate."""
    files = {
        "domains/blog/migrations/001_posts.sql": "CREATE TABLE posts (id INTEGER);",
        "domains/shop/migrations/001_products.sql": "CREATE TABLE products (id INTEGER);",
        "domains/shop/migrations/002_broken.sql": (
            "CREATE TABLE half (id INTEGER);\nCREAT TABLE oops (id INTEGER);"
        ),
        "domains/shop/migrations/003_later.sql": "CREATE TABLE later (id INTEGER);",
        **_plugin("shop", "ShopPlugin"),
        **_plugin("blog", "BlogPlugin"),
    }
    running = await boot(make_project(files, tools=TOOLS))
    status = running.kernel.status()
    assert status.tools["db"].status == "ok"
    assert status.plugins["blog.BlogPlugin"].status == "ok"
    shop = status.plugins["shop.ShopPlugin"]
    assert shop.status == "failed"
    message = shop.error.message
    assert "domains/shop/migrations/002_broken.sql failed" in message
    syntax = {"sqlite": 'near "CREAT": syntax error', "postgresql": 'at or near "CREAT"'}
    assert syntax[dialect.name] in message
    assert "CREAT TABLE oops" in message
    db: Any = running.kernel.tool("db")
    # The broken file rolled back as a whole; the files after it did not run.
    assert await _tables(db, dialect) == ["_microcore_migrations", "posts", "products"]
    assert sorted(db.migration_errors) == ["shop"]


async def test_fixed_migration_applies_on_next_boot(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """Once the broken file is fixed, the next boot applies it and the domain's plugins boot."""
    files = {
        "domains/shop/migrations/001_products.sql": "CREAT TABLE products (id INTEGER);",
        **_plugin("shop", "ShopPlugin"),
    }
    root = make_project(files, tools=TOOLS)
    await (await boot(root)).stop()
    (root / "domains/shop/migrations/001_products.sql").write_text(
        "CREATE TABLE products (id INT);"
    )
    running = await boot(root)
    assert running.kernel.status().plugins["shop.ShopPlugin"].status == "ok"


async def test_misnamed_migration_fails_its_domain(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """A .sql file without a number prefix is refused with the expected pattern."""
    files = {
        "domains/shop/migrations/products.sql": "CREATE TABLE products (id INTEGER);",
        **_plugin("shop", "ShopPlugin"),
    }
    running = await boot(make_project(files, tools=TOOLS))
    error = running.kernel.status().plugins["shop.ShopPlugin"].error
    assert "products.sql is misnamed; name it NNN_<name>.sql" in error.message


async def test_duplicate_migration_numbers_fail_their_domain(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """Two files with one number are refused, naming both."""
    files = {
        "domains/shop/migrations/001_a.sql": "CREATE TABLE a (id INTEGER);",
        "domains/shop/migrations/001_b.sql": "CREATE TABLE b (id INTEGER);",
        **_plugin("shop", "ShopPlugin"),
    }
    running = await boot(make_project(files, tools=TOOLS))
    error = running.kernel.status().plugins["shop.ShopPlugin"].error
    assert "001_a.sql and domains/shop/migrations/001_b.sql share the number 1" in (error.message)


async def test_database_variant_replaces_the_portable_file(
    make_project: Callable[..., Path], boot: Any, dialect: Any
) -> None:
    """NNN_name.<database>.sql runs instead of NNN_name.sql on that database; the ledger
    records NNN_name.sql either way."""
    files = {
        "domains/shop/migrations/001_products.sql": "CREATE TABLE products (generic TEXT);",
        "domains/shop/migrations/001_products.postgresql.sql": "CREATE TABLE products (pg TEXT);",
        "domains/shop/migrations/001_products.sqlite.sql": "CREATE TABLE products (lite TEXT);",
    }
    db: Any = (await boot(make_project(files, tools=TOOLS))).kernel.tool("db")
    columns = await db.query(dialect.columns_sql, ("products",))
    assert [c["name"] for c in columns] == [{"sqlite": "lite", "postgresql": "pg"}[dialect.name]]
    ledger = await db.query("SELECT domain, name FROM _microcore_migrations")
    assert ledger == [{"domain": "shop", "name": "001_products.sql"}]


async def test_variant_without_portable_file_runs_on_its_database_only(
    make_project: Callable[..., Path], boot: Any, dialect: Any
) -> None:
    """A variant alone is a migration for that database; the other one skips its number."""
    files = {
        "domains/shop/migrations/001_products.sql": "CREATE TABLE products (id INTEGER);",
        "domains/shop/migrations/002_speedup.postgresql.sql": (
            "CREATE INDEX products_id ON products USING brin (id);"
        ),
        "domains/shop/migrations/003_orders.sql": "CREATE TABLE orders (id INTEGER);",
    }
    db: Any = (await boot(make_project(files, tools=TOOLS))).kernel.tool("db")
    assert db.migration_errors == {}
    ledger = await db.query("SELECT name FROM _microcore_migrations ORDER BY name")
    expected = {
        "sqlite": ["001_products.sql", "003_orders.sql"],
        "postgresql": ["001_products.sql", "002_speedup.sql", "003_orders.sql"],
    }
    assert [r["name"] for r in ledger] == expected[dialect.name]


async def test_unknown_database_suffix_is_misnamed(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """A variant for a database we do not know (a typo) is refused, not silently skipped."""
    files = {
        "domains/shop/migrations/001_products.postgres.sql": "CREATE TABLE products (id INT);",
        **_plugin("shop", "ShopPlugin"),
    }
    running = await boot(make_project(files, tools=TOOLS))
    error = running.kernel.status().plugins["shop.ShopPlugin"].error
    assert "001_products.postgres.sql is misnamed" in error.message
    assert "NNN_<name>.postgresql.sql" in error.message


async def test_variant_of_another_migration_clashes_on_every_database(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """Two different migrations sharing a number are refused even when one is a variant."""
    files = {
        "domains/shop/migrations/001_a.sql": "CREATE TABLE a (id INTEGER);",
        "domains/shop/migrations/001_b.postgresql.sql": "CREATE TABLE b (id INTEGER);",
        **_plugin("shop", "ShopPlugin"),
    }
    running = await boot(make_project(files, tools=TOOLS))
    error = running.kernel.status().plugins["shop.ShopPlugin"].error
    assert "001_a.sql and domains/shop/migrations/001_b.postgresql.sql share the number 1" in (
        error.message
    )


async def test_replicas_booting_together_apply_each_migration_once(
    make_project: Callable[..., Path], url: str
) -> None:
    """Three apps migrating one database at once all boot; every file ran exactly once."""
    files = {
        f"domains/shop/migrations/00{n}_t{n}.sql": (
            f"CREATE TABLE t{n} (id INTEGER); INSERT INTO t{n} (id) VALUES ({n});"
        )
        for n in range(1, 5)
    }
    root = make_project(files, tools=TOOLS)
    apps: list[Any] = []

    async def start() -> None:
        apps.append(await start_app(root, settings={"DATABASE_URL": url}))

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(start)
        assert [running.kernel.tool("db").migration_errors for running in apps] == [{}] * 3
        db: Any = apps[0].kernel.tool("db")
        for n in range(1, 5):
            assert await db.query(f"SELECT id FROM t{n}") == [{"id": n}]
        assert len(await db.query("SELECT name FROM _microcore_migrations")) == 4
    finally:
        for running in apps:
            await running.stop()


async def test_example_domain_migrates_on_every_database(
    make_project: Callable[..., Path], boot: Any
) -> None:
    """The shipped products domain gets a working table: ids count from 1, bad prices fail."""
    root = make_project({}, tools=TOOLS)
    shutil.copytree(REPO / "domains/products/migrations", root / "domains/products/migrations")
    db: Any = (await boot(root)).kernel.tool("db")
    assert db.migration_errors == {}
    sql = "INSERT INTO products (name, price) VALUES (?, ?)"
    assert [await db.execute(sql, (name, 2.5)) for name in ("Pen", "Ink")] == [1, 2]
    with pytest.raises(sys.modules["tools.db"].IntegrityError):
        await db.execute(sql, ("Free", 0))
    row = await db.query_one("SELECT name, price FROM products WHERE id = 2")
    assert row == {"name": "Ink", "price": 2.5}


async def test_migrations_run_on_memory_database(make_project: Callable[..., Path]) -> None:
    """The in-memory test database gets every domain's schema too."""
    root = make_project(
        {"domains/shop/migrations/001_products.sql": "CREATE TABLE products (id INTEGER);"},
        tools=TOOLS,
    )
    running = await start_app(root)
    try:
        db: Any = running.kernel.tool("db")
        rows = await db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert {"name": "products"} in rows
    finally:
        await running.stop()
