"""Naming a statement in errors: its first line, without leading comments."""

from __future__ import annotations

import re

__all__ = ("first_line", "skip_comments")

_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.DOTALL)
_MAX_LINE = 120


def skip_comments(sql: str) -> str:
    """``sql`` without its leading whitespace and comments."""
    match = _LEADING.match(sql)
    return sql[match.end() :] if match else sql


def first_line(sql: str) -> str:
    """The first line of a statement, without leading comments, cut to a readable length.

    >>> first_line("-- add one\\nINSERT INTO t (a)\\nVALUES (?)")
    'INSERT INTO t (a)'
    """
    line = skip_comments(sql).split("\n", 1)[0].strip()
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
