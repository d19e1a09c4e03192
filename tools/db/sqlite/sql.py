"""Reading SQL the way SQLite does, just enough to route a statement (reader or writer,
row id or row count) and to split a migration script into statements."""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache

from .._sql import skip_comments

__all__ = ("first_keyword", "is_insert", "is_read", "split_script")

_WORD = re.compile(r"[A-Za-z]+")

# Statements a read-only connection can answer. Anything else goes to the writer;
# a read-only connection that is asked to write anyway refuses (query_only), and
# the statement is retried on the writer.
_READS = frozenset({"SELECT", "WITH", "VALUES", "EXPLAIN"})
_INSERTS = frozenset({"INSERT", "REPLACE"})


@lru_cache(maxsize=512)  # applications repeat a few hundred statements: classify each once
def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper case, after comments: ``"SELECT"``, ``"INSERT"``."""
    match = _WORD.match(skip_comments(sql))
    return match.group(0).upper() if match else ""


def is_read(sql: str) -> bool:
    """Whether the statement looks like a read (a reader connection may run it)."""
    return first_keyword(sql) in _READS


def is_insert(sql: str) -> bool:
    """Whether ``execute`` should answer the new row id rather than the affected rows."""
    return first_keyword(sql) in _INSERTS


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
