"""Reading SQL as SQLite does: routing by first keyword, scripts split at real semicolons."""

from __future__ import annotations

import pytest

from tools.db.sqlite.sql import first_keyword, is_insert, is_read, split_script


@pytest.mark.parametrize(
    ("sql", "keyword", "read", "insert"),
    [
        ("select 1", "SELECT", True, False),
        ("-- note\n/* block */ WITH v AS (SELECT 1) SELECT * FROM v", "WITH", True, False),
        ("REPLACE INTO t VALUES (1)", "REPLACE", False, True),
        ("  insert into t values (1)", "INSERT", False, True),
        ("UPDATE t SET a = 1", "UPDATE", False, False),
        ("-- only a comment", "", False, False),
    ],
)
def test_sqlite_statements_route_by_their_first_keyword(
    sql: str, keyword: str, read: bool, insert: bool
) -> None:
    """The first keyword after comments decides reader or writer, row id or row count."""
    assert (first_keyword(sql), is_read(sql), is_insert(sql)) == (keyword, read, insert)


def test_sqlite_script_splits_at_statement_ends_only() -> None:
    """Semicolons in literals and trigger bodies stay; empty statements and comment-only
    tails are dropped; a last statement without a semicolon is kept."""
    script = """
        CREATE TABLE a (x TEXT);;
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            UPDATE a SET x = ';' WHERE x IS NULL;
        END;
        -- a comment between statements
        INSERT INTO a VALUES ('1;2')
    """
    statements = split_script(script)
    assert [first_keyword(s) for s in statements] == ["CREATE", "CREATE", "INSERT"]
    assert statements[1].endswith("END;")
    assert statements[2].endswith("VALUES ('1;2')")
    assert split_script("SELECT 1; -- trailing note") == ["SELECT 1;"]
