"""query, query_one, execute and execute_many: rows as dicts, row ids, affected counts,
``?`` placeholders; the same on every driver."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest


async def test_execute_insert_returns_new_row_id(db: Any) -> None:
    """An INSERT answers the id of the row it created."""
    first = await db.execute("INSERT INTO products (name, price) VALUES (?, ?)", ("Pen", 2.5))
    second = await db.execute("INSERT INTO products (name, price) VALUES (?, ?)", ("Ink", 4.0))
    assert (first, second) == (1, 2)


async def test_execute_update_returns_affected_rows(db: Any) -> None:
    """UPDATE and DELETE answer how many rows they touched."""
    await db.execute_many("INSERT INTO products (name, price) VALUES (?, ?)", [("a", 1), ("b", 2)])
    assert await db.execute("UPDATE products SET price = price * 2") == 2
    assert await db.execute("DELETE FROM products WHERE name = ?", ("a",)) == 1
    assert await db.execute("DELETE FROM products WHERE name = ?", ("zzz",)) == 0


async def test_execute_insert_that_inserts_nothing_returns_zero(db: Any) -> None:
    """An INSERT skipped by ON CONFLICT DO NOTHING answers 0, not a stale row id."""
    await db.execute("INSERT INTO products (name) VALUES ('Pen')")
    skipped = await db.execute("INSERT INTO products (name) VALUES ('Pen') ON CONFLICT DO NOTHING")
    assert skipped == 0


async def test_query_returns_rows_as_dicts(db: Any) -> None:
    """Rows come back as dicts keyed by column name, in query order."""
    await db.execute_many(
        "INSERT INTO products (name, price) VALUES (?, ?)", [("Pen", 2.5), ("Ink", 4.0)]
    )
    rows = await db.query("SELECT name, price FROM products ORDER BY name")
    assert rows == [{"name": "Ink", "price": 4.0}, {"name": "Pen", "price": 2.5}]


async def test_query_without_rows_returns_empty_list(db: Any) -> None:
    """A query that matches nothing answers []."""
    assert await db.query("SELECT * FROM products WHERE price > ?", (100,)) == []


async def test_query_one_returns_first_row_or_none(db: Any) -> None:
    """query_one answers the first row, or None when there is none."""
    product_id = await db.execute("INSERT INTO products (name, price) VALUES ('Pen', 2.5)")
    row = await db.query_one("SELECT * FROM products WHERE id = ?", (product_id,))
    assert row == {"id": product_id, "name": "Pen", "price": 2.5}
    assert await db.query_one("SELECT * FROM products WHERE id = ?", (999,)) is None


async def test_query_one_with_returning_writes_the_row(db: Any) -> None:
    """INSERT ... RETURNING through query_one inserts and answers the returned columns."""
    row = await db.query_one("INSERT INTO products (name) VALUES ('Pen') RETURNING id, name")
    assert row == {"id": 1, "name": "Pen"}
    assert await db.query("SELECT name FROM products") == [{"name": "Pen"}]


async def test_execute_many_inserts_every_row_and_counts_them(db: Any) -> None:
    """execute_many runs the statement once per row and answers the total affected."""
    rows = [(f"p{i}", float(i)) for i in range(50)]
    assert await db.execute_many("INSERT INTO products (name, price) VALUES (?, ?)", rows) == 50
    count = await db.query_one("SELECT count(*) AS n FROM products")
    assert count == {"n": 50}


async def test_execute_many_is_all_or_nothing(db: Any, errors: ModuleType) -> None:
    """A batch with one bad row leaves no row of the batch behind."""
    with pytest.raises(errors.IntegrityError, match=r"(?i)unique"):
        await db.execute_many("INSERT INTO products (name) VALUES (?)", [("a",), ("b",), ("a",)])
    assert await db.query("SELECT * FROM products") == []


async def test_execute_accepts_list_params_and_no_params(db: Any) -> None:
    """Parameters may be a list; statements without placeholders need none."""
    await db.execute("INSERT INTO products (name, price) VALUES (?, ?)", ["Pen", 1])
    assert await db.query("SELECT name FROM products") == [{"name": "Pen"}]


async def test_none_params_mean_no_params(db: Any) -> None:
    """``None`` for the parameters is the same as none at all, in and out of transactions."""
    await db.execute("INSERT INTO products (name) VALUES ('Pen')", None)
    async with db.transaction() as tx:
        assert await tx.query_one("SELECT name FROM products", None) == {"name": "Pen"}
    assert await db.query("SELECT name FROM products", None) == [{"name": "Pen"}]


async def test_execute_refuses_a_bare_string_as_params(db: Any, errors: ModuleType) -> None:
    """A string where a tuple belongs is refused with a hint, not bound char by char."""
    with pytest.raises(errors.ProgrammingError, match=r"for one value write \(value,\)"):
        await db.execute("DELETE FROM products WHERE name = ?", "Pen")


async def test_query_writing_statement_runs_on_the_writer(db: Any) -> None:
    """A CTE that writes is routed to the writer and its change is kept."""
    await db.query("WITH v(n) AS (SELECT 'Pen') INSERT INTO products (name) SELECT n FROM v")
    assert await db.query("SELECT name FROM products") == [{"name": "Pen"}]


async def test_write_is_visible_to_the_next_read(db: Any) -> None:
    """An acknowledged write is seen by every later read (readers see the latest commit)."""
    for i in range(20):
        product_id = await db.execute("INSERT INTO products (name) VALUES (?)", (f"p{i}",))
        row = await db.query_one("SELECT name FROM products WHERE id = ?", (product_id,))
        assert row == {"name": f"p{i}"}


async def test_execute_multi_row_insert_returns_the_last_row_id(db: Any) -> None:
    """An INSERT of several rows answers the id of the last one."""
    await db.execute("INSERT INTO products (name) VALUES ('a')")
    assert await db.execute("INSERT INTO products (name) VALUES ('b'), ('c'), (?)", ("d",)) == 4


async def test_execute_insert_with_comment_and_semicolon_returns_row_id(db: Any) -> None:
    """Leading comments, a trailing semicolon and a trailing comment do not hide the row id."""
    sql = "-- add one\nINSERT INTO products (name)\nVALUES (?); -- done"
    assert await db.execute(sql, ("Pen",)) == 1
    assert await db.execute(sql, ("Ink",)) == 2


async def test_execute_insert_with_own_returning_answers_its_id(db: Any) -> None:
    """An INSERT that returns its id through execute still answers that id."""
    await db.execute("INSERT INTO products (name) VALUES ('a')")
    assert await db.execute("INSERT INTO products (name) VALUES (?) RETURNING id", ("b",)) == 2


async def test_question_marks_in_literals_names_and_comments_are_not_placeholders(
    db: Any,
) -> None:
    """Only a ? outside strings, quoted names and comments takes a parameter."""
    await db.execute('CREATE TABLE "odd?" ("why?" TEXT)')
    await db.execute(
        """INSERT INTO "odd?" ("why?") -- a ? here is a comment
        VALUES (? /* and ? here too */)""",
        ("it's?",),
    )
    row = await db.query_one(
        """SELECT 'what?' AS literal, 'it''s ?' AS quoted, "why?" AS value
        FROM "odd?" WHERE "why?" = ?""",
        ("it's?",),
    )
    assert row == {"literal": "what?", "quoted": "it's ?", "value": "it's?"}


async def test_numbered_placeholders_bind_by_number(db: Any) -> None:
    """?NNN takes parameter NNN; a bare ? after it takes the next number (SQLite's rule)."""
    await db.execute_many("INSERT INTO products (name, price) VALUES (?, ?)", [("a", 1), ("b", 2)])
    rows = await db.query(
        "SELECT name FROM products WHERE name = ?2 OR name = ?1 OR price = ? ORDER BY name",
        ("a", "zzz", 2.0),
    )
    assert rows == [{"name": "a"}, {"name": "b"}]


async def test_execute_many_with_no_rows_does_nothing(db: Any) -> None:
    """An empty batch answers 0 and changes nothing."""
    assert await db.execute_many("INSERT INTO products (name) VALUES (?)", []) == 0
    assert await db.query("SELECT * FROM products") == []


async def test_execute_many_counts_rows_an_update_touched(db: Any) -> None:
    """execute_many answers the rows affected over the batch, not the batch length."""
    await db.execute_many("INSERT INTO products (name, price) VALUES (?, ?)", [("a", 1), ("b", 1)])
    changed = await db.execute_many(
        "UPDATE products SET price = ? WHERE price = ?", [(5, 1), (6, 99)]
    )
    assert changed == 2


async def test_values_round_trip_with_their_types(db: Any) -> None:
    """Text, integers, floats and NULL come back as str, int, float and None."""
    await db.execute("CREATE TABLE kinds (t TEXT, i INTEGER, f REAL, n TEXT)")
    await db.execute("INSERT INTO kinds VALUES (?, ?, ?, ?)", ("été ✓", -(2**31), 0.5, None))
    assert await db.query("SELECT * FROM kinds") == [
        {"t": "été ✓", "i": -(2**31), "f": 0.5, "n": None}
    ]


async def test_execute_many_refuses_a_query(db: Any, errors: ModuleType) -> None:
    """execute_many runs writes only: a SELECT batch is a ProgrammingError."""
    with pytest.raises(errors.ProgrammingError):
        await db.execute_many("SELECT name FROM products WHERE name = ?", [("a",), ("b",)])


async def test_execute_of_a_query_or_ddl_answers_zero(db: Any) -> None:
    """execute answers affected rows: none for a SELECT or a CREATE."""
    await db.execute("INSERT INTO products (name) VALUES ('a')")
    assert await db.execute("SELECT * FROM products") == 0
    assert await db.execute("CREATE TABLE other (x INTEGER)") == 0
