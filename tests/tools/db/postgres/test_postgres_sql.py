"""Reading SQL as PostgreSQL does: ``?`` to ``$n`` only where PostgreSQL reads an operator,
the statement's shape, and migration scripts split at the right semicolons."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tools.db.postgres.sql import analyze, split_script, tokenize, with_returning


@pytest.mark.parametrize(
    ("sql", "translated"),
    [
        ("SELECT ?", "SELECT $1"),
        ("SELECT ?, ?,?", "SELECT $1, $2,$3"),
        ("SELECT * FROM t WHERE a=? AND b<>?", "SELECT * FROM t WHERE a=$1 AND b<>$2"),
        ("SELECT '?', ?", "SELECT '?', $1"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"),
        ("SELECT 'C:\\', ?", "SELECT 'C:\\', $1"),  # standard strings: \ is a character
        ("SELECT E'\\'?', ?", "SELECT E'\\'?', $1"),  # escape strings: \' stays inside
        ("SELECT e'\\\\', ?", "SELECT e'\\\\', $1"),
        ("SELECT E'a''?', ?", "SELECT E'a''?', $1"),
        ("SELECT U&'d?\\0061', ?", "SELECT U&'d?\\0061', $1"),
        ("SELECT B'01', X'1F', N'?', ?", "SELECT B'01', X'1F', N'?', $1"),
        ('SELECT "why?", "a""?", ?', 'SELECT "why?", "a""?", $1'),
        ('SELECT U&"?", ?', 'SELECT U&"?", $1'),
        ("SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"),
        ("SELECT ? --?", "SELECT $1 --?"),
        ("SELECT /* ? /* ? */ ? */ ?", "SELECT /* ? /* ? */ ? */ $1"),
        ("SELECT $$?$$, ?", "SELECT $$?$$, $1"),
        ("SELECT $fn$ ? $$ ? $fn$, ?", "SELECT $fn$ ? $$ ? $fn$, $1"),
        ("SELECT $a$ $b$ ? $b$ $a$, ?", "SELECT $a$ $b$ ? $b$ $a$, $1"),
        ("SELECT $_1$?$_1$, ?", "SELECT $_1$?$_1$, $1"),
        ("SELECT a$b, ?", "SELECT a$b, $1"),  # $ inside a name is no dollar quote
        ("SELECT a$$, ?", "SELECT a$$, $1"),
        ("SELECT 1.5e10, x::int, ?", "SELECT 1.5e10, x::int, $1"),
        ("SELECT data ?? 'k', data ??| ?", "SELECT data ? 'k', data ?| $1"),
        ("SELECT ??&", "SELECT ?&"),
        ("SELECT ?2, ?, ?1", "SELECT $2, $3, $1"),
        ("SELECT ?10", "SELECT $10"),
        ("SELECT 'unterminated ?", "SELECT 'unterminated ?"),
        ("SELECT /* unterminated ?", "SELECT /* unterminated ?"),
        ("SELECT $$ unterminated ?", "SELECT $$ unterminated ?"),
        ("SELECT 'é?', \"ü?\", ?", "SELECT 'é?', \"ü?\", $1"),
    ],
)
def test_analyze_translates_only_placeholders_outside_quotes(sql: str, translated: str) -> None:
    """A ? outside literals, quoted names, comments and dollar quotes becomes $n."""
    assert analyze(sql).sql == translated


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 0),
        ("SELECT '?'", 0),
        ("SELECT ?, ?", 2),
        ("SELECT ?2", 2),  # ?1 unused still counts: SQLite's rule
        ("SELECT ?1, ?1", 1),
        ("SELECT $1, $3", 3),
        ("SELECT ??", 0),
    ],
)
def test_analyze_counts_the_parameters_a_statement_takes(sql: str, count: int) -> None:
    """The number of values is the highest placeholder number."""
    assert analyze(sql).params == count


def test_analyze_flags_question_marks_mixed_with_native_parameters() -> None:
    """? and $n in one statement would bind one value twice: flagged for refusal."""
    assert analyze("SELECT $1, ?").mixed
    assert not analyze("SELECT $1, $2").mixed
    assert not analyze("SELECT '$1', ?").mixed


@pytest.mark.parametrize(
    ("sql", "several"),
    [
        ("SELECT 1", False),
        ("SELECT 1;", False),
        ("SELECT 1; -- done\n", False),
        ("SELECT ';'", False),
        ("SELECT $$;$$", False),
        ("SELECT 1; SELECT 2", True),
        ("SELECT 1;;", False),
    ],
)
def test_analyze_tells_one_statement_from_several(sql: str, several: bool) -> None:
    """Semicolons in quotes or at the end do not make a second statement."""
    assert analyze(sql).several is several


@pytest.mark.parametrize(
    ("sql", "verb", "main"),
    [
        ("select 1", "SELECT", "SELECT"),
        ("-- note\n/* x */ INSERT INTO t VALUES (1)", "INSERT", "INSERT"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH", "SELECT"),
        ("WITH x AS (DELETE FROM y RETURNING *) INSERT INTO t SELECT * FROM x", "WITH", "INSERT"),
        ("WITH RECURSIVE n(i) AS (SELECT 1) UPDATE t SET a = 1", "WITH", "UPDATE"),
        ("WITH a AS MATERIALIZED (SELECT 1), b AS (SELECT 2) DELETE FROM t", "WITH", "DELETE"),
    ],
)
def test_analyze_reads_the_verb_and_the_verb_after_with(sql: str, verb: str, main: str) -> None:
    """The first keyword, and the statement a WITH clause leads to."""
    analysis = analyze(sql)
    assert (analysis.verb, analysis.main) == (verb, main)


@pytest.mark.parametrize(
    ("sql", "returning"),
    [
        ("INSERT INTO t (a) VALUES (1)", False),
        ("INSERT INTO t (a) VALUES (1) RETURNING id", True),
        ("insert into t (a) values (1) returning *", True),
        ("INSERT INTO t (a) VALUES ('RETURNING')", False),
        ('INSERT INTO t ("returning") VALUES (1)', False),
        ("INSERT INTO t WITH x AS (DELETE FROM y RETURNING *) SELECT * FROM x", False),
    ],
)
def test_analyze_sees_only_a_top_level_returning(sql: str, returning: bool) -> None:
    """RETURNING in a literal, a quoted name or a sub-statement is not the statement's own."""
    assert analyze(sql).returning is returning


@pytest.mark.parametrize(
    ("sql", "table"),
    [
        ("INSERT INTO products (name) VALUES (?)", "products"),
        ("insert into products(name) values (?)", "products"),
        ("INSERT INTO shop.products VALUES (?)", "shop.products"),
        ('INSERT INTO "My Shop"."Products" VALUES (?)', '"My Shop"."Products"'),
        ("INSERT INTO products AS p (name) VALUES (?)", "products"),
        ("INSERT INTO t SELECT * FROM u", "t"),
        ("SELECT * FROM products", None),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", None),
    ],
)
def test_analyze_reads_the_insert_target_as_written(sql: str, table: str | None) -> None:
    """The table an INSERT writes to, schema and quotes kept, for the id column lookup."""
    assert analyze(sql).table == table


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("INSERT INTO t (a) VALUES (?)", "INSERT INTO t (a) VALUES ($1) RETURNING id"),
        ("INSERT INTO t (a) VALUES (?);", "INSERT INTO t (a) VALUES ($1) RETURNING id;"),
        (
            "INSERT INTO t (a) VALUES (?) -- note ; ?\n",
            "INSERT INTO t (a) VALUES ($1) RETURNING id -- note ; ?\n",
        ),
        (
            "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING  ",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING RETURNING id  ",
        ),
    ],
)
def test_with_returning_appends_after_the_last_token(sql: str, expected: str) -> None:
    """RETURNING goes after the statement's last token: before a ; or a trailing comment."""
    assert with_returning(analyze(sql), "id") == expected


@pytest.mark.parametrize(
    ("script", "statements"),
    [
        ("", []),
        ("-- only a comment\n", []),
        ("CREATE TABLE a (x int)", ["CREATE TABLE a (x int)"]),
        ("SELECT 1; SELECT 2;", ["SELECT 1;", "SELECT 2;"]),
        ("INSERT INTO a VALUES (';'); SELECT 2", ["INSERT INTO a VALUES (';');", "SELECT 2"]),
        ('CREATE TABLE "a;b" (x int); SELECT 1', ['CREATE TABLE "a;b" (x int);', "SELECT 1"]),
        ("SELECT 1 /* ; */; SELECT 2", ["SELECT 1 /* ; */;", "SELECT 2"]),
        ("SELECT 1; -- ; tail", ["SELECT 1;"]),
        (
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; SELECT f();",
            ["CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;", "SELECT f();"],
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
            "SELECT CASE WHEN true THEN 1 ELSE 2 END; SELECT 3; END; SELECT f();",
            [
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
                "SELECT CASE WHEN true THEN 1 ELSE 2 END; SELECT 3; END;",
                "SELECT f();",
            ],
        ),
        ("BEGIN; SELECT 1; END;", ["BEGIN;", "SELECT 1;", "END;"]),
    ],
)
def test_split_script_splits_at_top_level_semicolons(script: str, statements: list[str]) -> None:
    """Semicolons inside quotes, comments, dollar quotes and BEGIN ATOMIC bodies stay."""
    assert split_script(script) == statements


_ALPHABET = "ab$?'\"-/*;()\\ \nEe1_.:&U"


def test_tokenize_keeps_every_character_of_any_input() -> None:
    """Whatever the text (quotes left open included), the tokens join back to it exactly."""
    rng = random.Random(20240611)
    for _ in range(3000):
        sql = "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 40)))
        assert "".join(text for _, text in tokenize(sql)) == sql
        analysis = analyze(sql)  # never raises, never loops
        assert analysis.sql.count("$") >= sql.count("$")


async def test_placeholders_agree_with_postgresql(postgres_url: str) -> None:
    """The server reads each quoted ? as text and binds each translated one: our lexer
    and PostgreSQL's agree on a statement full of traps."""
    import asyncpg

    sql = """SELECT ? AS p1, '?' AS s, 'C:\\' AS win, E'\\'?' AS e, $$ ? $$ AS d,
        $x$ $$ ? $x$ AS t, "q?".v AS q, /* ? /* ? */ ? */ ?::int AS p2 -- ?
        FROM (SELECT 'v?' AS v) AS "q?" WHERE ?2 = 2 AND ?1 = 'one'"""
    analysis = analyze(sql)
    conn: Any = await asyncpg.connect(postgres_url)
    try:
        row = await conn.fetchrow(analysis.sql, "one", 2)
    finally:
        await conn.close()
    assert dict(row) == {
        "p1": "one",
        "s": "?",
        "win": "C:\\",
        "e": "'?",
        "d": " ? ",
        "t": " $$ ? ",
        "q": "v?",
        "p2": 2,
    }
