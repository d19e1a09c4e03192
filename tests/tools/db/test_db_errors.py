"""Driver errors are translated: a small hierarchy, the statement named, the cause chained;
the same classes on every driver, each with its engine's own reason."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from microcore import MicroCoreError

# The engine's own words for each failure: the reason is the database's message.
REASONS = {
    "sqlite": {
        "unique": "UNIQUE constraint failed: products.name",
        "not_null": r"NOT NULL constraint failed: products\.name",
        "foreign_key": "FOREIGN KEY constraint failed",
        "syntax": 'near "SELEC": syntax error',
        "no_table": "no such table: nope",
        "unbindable": "type 'dict' is not supported",
    },
    "postgresql": {
        "unique": 'duplicate key value violates unique constraint "products_name_key"',
        "not_null": 'null value in column "name" of relation "products" violates not-null',
        "foreign_key": 'violates foreign key constraint "lines_product_id_fkey"',
        "syntax": 'syntax error at or near "SELEC"',
        "no_table": 'relation "nope" does not exist',
        "unbindable": "expected str, got dict",
    },
}


async def test_integrity_error_is_409_conflict_naming_the_constraint(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """A UNIQUE violation is an IntegrityError: 409 'conflict', constraint and statement named."""
    await db.execute("INSERT INTO products (name) VALUES ('Pen')")
    with pytest.raises(errors.IntegrityError) as info:
        await db.execute("INSERT INTO products (name)\nVALUES (?)", ("Pen",))
    error = info.value
    reason = REASONS[dialect.name]["unique"]
    assert (error.http_status, error.code) == (409, "conflict")
    assert error.reason == reason
    assert str(error) == f"{reason} (in: INSERT INTO products (name))"
    assert isinstance(error, errors.DatabaseError) and isinstance(error, MicroCoreError)
    assert isinstance(error.__cause__, dialect.driver_error)


async def test_integrity_error_never_quotes_the_row(db: Any, errors: ModuleType) -> None:
    """The message names the constraint but not the conflicting values (they may be private)."""
    await db.execute("INSERT INTO products (name) VALUES (?)", ("secret-name",))
    with pytest.raises(errors.IntegrityError) as info:
        await db.execute("INSERT INTO products (name) VALUES (?)", ("secret-name",))
    assert "secret-name" not in str(info.value)


async def test_not_null_violation_is_integrity_error(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """NOT NULL violations are conflicts too."""
    with pytest.raises(errors.IntegrityError, match=REASONS[dialect.name]["not_null"]):
        await db.execute("INSERT INTO products (price) VALUES (1)")


async def test_foreign_keys_are_enforced(db: Any, errors: ModuleType, dialect: Any) -> None:
    """Foreign keys are on: a dangling reference is an IntegrityError."""
    await db.execute("CREATE TABLE lines (product_id INTEGER REFERENCES products (id))")
    with pytest.raises(errors.IntegrityError, match=REASONS[dialect.name]["foreign_key"]):
        await db.execute("INSERT INTO lines (product_id) VALUES (42)")


async def test_syntax_error_is_programming_error_with_statement(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """A syntax error is a ProgrammingError whose message shows the statement's first line."""
    with pytest.raises(errors.ProgrammingError) as info:
        await db.query("-- list\nSELEC * FROM products\nWHERE 1")
    assert str(info.value) == f"{REASONS[dialect.name]['syntax']} (in: SELEC * FROM products)"
    assert isinstance(info.value.__cause__, dialect.driver_error)


async def test_unknown_table_is_programming_error(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """A missing table names itself in the error."""
    with pytest.raises(errors.ProgrammingError, match=REASONS[dialect.name]["no_table"]):
        await db.query("SELECT * FROM nope")


async def test_wrong_parameter_count_is_programming_error(db: Any, errors: ModuleType) -> None:
    """Too few or too many parameters say how many the statement uses."""
    with pytest.raises(errors.ProgrammingError, match="uses 2, and there are 1 supplied"):
        await db.execute("INSERT INTO products (name, price) VALUES (?, ?)", ("Pen",))
    with pytest.raises(errors.ProgrammingError, match="uses 1, and there are 2 supplied"):
        await db.query("SELECT * FROM products WHERE name = ?", ("Pen", "Ink"))


async def test_several_statements_in_one_call_are_refused(db: Any, errors: ModuleType) -> None:
    """One call runs one statement: a second one is refused, and neither runs."""
    with pytest.raises(errors.ProgrammingError, match="one statement at a time"):
        await db.execute("INSERT INTO products (name) VALUES ('a'); DELETE FROM products")
    assert await db.query("SELECT * FROM products") == []


async def test_unbindable_parameter_is_programming_error(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """A value the database cannot store (a dict) is refused as a ProgrammingError, more
    precisely a DataError: a parameter the database cannot hold (400)."""
    with pytest.raises(errors.ProgrammingError, match=REASONS[dialect.name]["unbindable"]) as info:
        await db.execute("INSERT INTO products (name) VALUES (?)", ({"a": 1},))
    _assert_client_error(info.value, errors)


# The first integer past an INTEGER id: SQLite's 64 bits, PostgreSQL's int4 (SERIAL).
PAST_THE_COLUMN = {"sqlite": 9223372036854775808, "postgresql": 2147483648}


def _assert_client_error(error: Any, errors: ModuleType) -> None:
    """A DataError: 400 'invalid_parameter', a ProgrammingError too, nothing of the SQL
    or the value in what a client reads."""
    assert isinstance(error, errors.DataError) and isinstance(error, errors.ProgrammingError)
    assert (error.http_status, error.code) == (400, "invalid_parameter")
    assert "SELECT" not in error.public_message and "INSERT" not in error.public_message
    assert error.__cause__ is not None


async def test_integer_past_the_column_is_a_client_data_error(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """An id past what the column holds (issue #14: 9223372036854775808 on SQLite,
    2147483648 on PostgreSQL) is a DataError, 400 'invalid_parameter', never a 500."""
    too_big = PAST_THE_COLUMN[dialect.name]
    with pytest.raises(errors.DataError) as info:
        await db.query_one("SELECT * FROM products WHERE id = ?", (too_big,))
    _assert_client_error(info.value, errors)
    assert str(too_big) not in info.value.public_message
    assert info.value.statement == "SELECT * FROM products WHERE id = ?"
    assert await db.query_one("SELECT * FROM products WHERE id = ?", (1,)) is None


async def test_integer_past_the_column_in_a_transaction_is_a_data_error(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """Inside a transaction the same value is the same DataError; a savepoint around it
    lets the transaction carry on and commit."""
    async with db.transaction() as tx:
        with pytest.raises(errors.DataError):
            async with tx.transaction() as inner:
                await inner.execute(
                    "UPDATE products SET price = 1 WHERE id = ?", (PAST_THE_COLUMN[dialect.name],)
                )
        await tx.execute("INSERT INTO products (name) VALUES (?)", ("Pen",))
    assert [r["name"] for r in await db.query("SELECT name FROM products")] == ["Pen"]


async def test_text_for_an_integer_column_is_a_client_data_error(
    db: Any, errors: ModuleType, dialect: Any
) -> None:
    """Text where the column holds integers (a STRICT table on SQLite, which otherwise
    stores it as text) is a DataError too."""
    strict = " STRICT" if dialect.name == "sqlite" else ""
    await db.execute(f"CREATE TABLE counts (n INTEGER NOT NULL){strict}")
    with pytest.raises(errors.DataError) as info:
        await db.execute("INSERT INTO counts (n) VALUES (?)", ("abc",))
    _assert_client_error(info.value, errors)
    assert await db.query("SELECT * FROM counts") == []


async def test_connection_serves_on_after_every_kind_of_error(db: Any, errors: ModuleType) -> None:
    """After each failure, statements and transactions on the same connections work."""
    bad = [
        ("INSERT INTO products (name) VALUES (?)", ({"a": 1},)),
        ("SELECT * FROM nope", ()),
        ("INSERT INTO products (name) VALUES (NULL)", ()),
        ("SELECT ?", (1, 2)),
        ("SELECT * FROM products WHERE id = ?", (2**70,)),
    ]
    for sql, params in bad:
        with pytest.raises(errors.DatabaseError):
            await db.execute(sql, params)
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO products (name) VALUES (?)", (sql,))
    assert len(await db.query("SELECT * FROM products")) == len(bad)


async def test_driver_exceptions_never_escape(db: Any, dialect: Any) -> None:
    """No driver exception reaches the caller unwrapped, whatever goes wrong."""
    bad = [
        ("SELECT * FROM nope", ()),
        ("INSERT INTO products (name) VALUES (NULL)", ()),
        ("SELECT ?", (1, 2)),
        ("SELECT ?", (2**70,)),
        ("SELECT 1; SELECT 2", ()),
    ]
    for sql, params in bad:
        with pytest.raises(MicroCoreError) as info:
            await db.query(sql, params)
        assert not isinstance(info.value, dialect.driver_error)


async def test_statement_after_shutdown_is_operational_error(
    booted: Any, errors: ModuleType
) -> None:
    """Using the tool after it shut down is a clear OperationalError."""
    db: Any = booted.kernel.tool("db")
    await booted.stop()
    with pytest.raises(errors.OperationalError, match="not open"):
        await db.query("SELECT 1")
