"""Reading SQL text just enough to route it, name it in errors, and split migration scripts."""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache

__all__ = ("first_keyword", "first_line", "is_insert", "is_read", "split_script")

_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z]+")
_MAX_LINE = 120

# Statements a read-only connection can answer. Anything else goes to the writer;
# a read-only connection that is asked to write anyway refuses (query_only), and
# the statement is retried on the writer.
_READS = frozenset({"SELECT", "WITH", "VALUES", "EXPLAIN"})
_INSERTS = frozenset({"INSERT", "REPLACE"})


def _skip_comments(sql: str) -> str:
    match = _LEADING.match(sql)
    return sql[match.end() :] if match else sql


@lru_cache(maxsize=512)  # applications repeat a few hundred statements: classify each once
def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper case, after comments: ``"SELECT"``, ``"INSERT"``."""
    match = _WORD.match(_skip_comments(sql))
    return match.group(0).upper() if match else ""


def is_read(sql: str) -> bool:
    """Whether the statement looks like a read (a reader connection may run it)."""
    return first_keyword(sql) in _READS


def is_insert(sql: str) -> bool:
    """Whether ``execute`` should answer the new row id rather than the affected rows."""
    return first_keyword(sql) in _INSERTS


def first_line(sql: str) -> str:
    """The first line of a statement, without leading comments, cut to a readable length.

    >>> first_line("-- add one\\nINSERT INTO t (a)\\nVALUES (?)")
    'INSERT INTO t (a)'
    """
    line = _skip_comments(sql).split("\n", 1)[0].strip()
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def split_script(script: str) -> list[str]:
    """Split a SQL script into statements, respecting string literals and trigger bodies.

    >>> split_script("CREATE TABLE a (x);\\n-- note\\nINSERT INTO a VALUES (';');")
    ['CREATE TABLE a (x);', "-- note\\nINSERT INTO a VALUES (';');"]
    """
    statements: list[str] = []
    start = 0
    for index, char in enumerate(script):
        if char != ";":
            continue
        chunk = script[start : index + 1]
        if sqlite3.complete_statement(chunk):
            if first_keyword(chunk):
                statements.append(chunk.strip())
            start = index + 1
    rest = script[start:]
    if first_keyword(rest):
        statements.append(rest.strip())
    return statements
