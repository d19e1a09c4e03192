"""Reading SQL the way PostgreSQL's lexer does: ``?`` placeholders, statement shape, scripts.

The ``db`` API takes ``?`` placeholders on every backend; PostgreSQL wants ``$1 .. $n``.
:func:`analyze` rewrites them with a small tokenizer, so a ``?`` is a placeholder only
where PostgreSQL would read an operator character. It stays as written inside:

* string literals: ``'it''s?'``, ``E'\\'?'`` (backslash escapes), ``U&'?'``, ``B''``, ``X''``;
* quoted identifiers: ``"why?"``, ``U&"?"``;
* comments: ``-- why?`` and ``/* nested /* why? */ */``;
* dollar-quoted strings: ``$$ why? $$``, ``$fn$ ... $fn$`` (``a$b`` is an identifier).

``?NNN`` is SQLite's numbered placeholder and becomes ``$NNN`` (a bare ``?`` after it
takes the next number, as in SQLite). PostgreSQL operators spelled with ``?``
(``jsonb ? key``, ``?|``, ``?&``) are written ``??``, ``??|``, ``??&``: ``??`` is one
literal ``?``. A statement mixing ``?`` with native ``$1`` parameters is refused.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec

__all__ = ("Analysis", "analyze", "split_script", "with_returning")

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGITS = frozenset("0123456789")
_IDENT_PART = _IDENT_START | _DIGITS | {"$"}
_TAG_PART = _IDENT_START | _DIGITS  # a dollar-quote tag has no "$" of its own
_STRING_PREFIXES = frozenset({"B", "X", "N"})  # B'0101', X'1F', N'text': plain quoting

# Token kinds: what the analysis needs to tell apart.
SPACE, COMMENT, STRING, IDENT, QUOTED, WORD, PARAM, NATIVE, PUNCT = range(9)

_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE"})


def _is_ident_start(char: str) -> bool:
    return char in _IDENT_START or char >= "\x80"


def _is_ident_part(char: str) -> bool:
    return char in _IDENT_PART or char >= "\x80"


def _quoted_end(sql: str, start: int, quote: str, *, backslash: bool = False) -> int:
    """The index after the closing ``quote`` of a literal opened at ``start`` (doubled
    quotes stay inside; with ``backslash``, ``\\x`` escapes too); ``len(sql)`` if open."""
    i, n = start + 1, len(sql)
    while i < n:
        char = sql[i]
        if backslash and char == "\\":
            i += 2
        elif char == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


def _block_comment_end(sql: str, start: int) -> int:
    """The index after a ``/* ... */`` comment opened at ``start``; they nest in PostgreSQL."""
    depth, i, n = 0, start, len(sql)
    while i < n:
        pair = sql[i : i + 2]
        if pair == "/*":
            depth += 1
            i += 2
        elif pair == "*/":
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _dollar_tag(sql: str, start: int) -> str | None:
    """``$tag$`` (or ``$$``) opening a dollar-quoted string at ``start``, else ``None``."""
    i, n = start + 1, len(sql)
    if i < n and sql[i] in _DIGITS:
        return None  # $1: a parameter
    while i < n and (sql[i] in _TAG_PART or sql[i] >= "\x80"):
        i += 1
    return sql[start : i + 1] if i < n and sql[i] == "$" else None


def tokenize(sql: str) -> list[tuple[int, str]]:
    """Split ``sql`` into ``(kind, text)`` tokens; joining the texts gives ``sql`` back."""
    tokens: list[tuple[int, str]] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        start = i
        if char.isspace():
            while i < n and sql[i].isspace():
                i += 1
            kind = SPACE
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
            kind = COMMENT
        elif sql.startswith("/*", i):
            i = _block_comment_end(sql, i)
            kind = COMMENT
        elif char == "'":
            i = _quoted_end(sql, i, "'")
            kind = STRING
        elif char == '"':
            i = _quoted_end(sql, i, '"')
            kind = QUOTED
        elif char in "eE" and sql.startswith("'", i + 1):
            i = _quoted_end(sql, i + 1, "'", backslash=True)
            kind = STRING
        elif char in "uU" and sql.startswith(("&'", '&"'), i + 1):
            quote = sql[i + 2]
            i = _quoted_end(sql, i + 2, quote)
            kind = STRING if quote == "'" else QUOTED
        elif char.upper() in _STRING_PREFIXES and sql.startswith("'", i + 1):
            i = _quoted_end(sql, i + 1, "'")
            kind = STRING
        elif _is_ident_start(char):
            while i < n and _is_ident_part(sql[i]):
                i += 1
            kind = IDENT
        elif char in _DIGITS:
            while i < n and (sql[i] in _DIGITS or sql[i] == "." or _is_ident_start(sql[i])):
                i += 1  # 12, 1.5, 1e10, 0x1F: one token, never a placeholder
            kind = WORD
        elif char == "?":
            i += 1
            if i < n and sql[i] == "?":
                i += 1  # ?? is a literal ?
            else:
                while i < n and sql[i] in _DIGITS:
                    i += 1
            kind = PARAM
        elif char == "$":
            tag = _dollar_tag(sql, i)
            if tag is not None:
                close = sql.find(tag, i + len(tag))
                i = n if close < 0 else close + len(tag)
                kind = STRING
            else:
                i += 1
                while i < n and sql[i] in _DIGITS:
                    i += 1
                kind = NATIVE if i - start > 1 else PUNCT
        else:
            i += 1
            kind = PUNCT
        tokens.append((kind, sql[start:i]))
    return tokens


class Analysis(msgspec.Struct, frozen=True):
    """One statement as PostgreSQL will run it.

    ``sql``: with ``$n`` placeholders; ``params``: how many values it takes;
    ``verb``: its first keyword (``"INSERT"``), ``main``: the verb after a ``WITH`` clause;
    ``returning``: it has its own top-level RETURNING; ``end``: where a RETURNING clause
    may be appended in ``sql`` (after the last token, before a ``;`` or trailing comment);
    ``table``: the INSERT target as written (``"public.products"``), else ``None``;
    ``several``: more than one statement; ``mixed``: ``?`` and ``$n`` together.
    """

    sql: str
    params: int
    verb: str
    main: str
    returning: bool
    end: int
    table: str | None
    several: bool
    mixed: bool


@lru_cache(maxsize=1024)  # applications repeat a few hundred statements: read each once
def analyze(sql: str) -> Analysis:
    """Translate placeholders and read the statement's shape (see the module docstring)."""
    out: list[str] = []
    size = 0  # len("".join(out)), kept as we go
    depth = 0
    highest = 0
    native = questions = False
    words: list[str] = []  # depth-0 words of the first statement, upper case
    significant: list[tuple[int, str]] = []  # tokens of the first statement, no space/comment
    end = 0
    done = several = False
    for kind, text in tokenize(sql):
        if kind == PARAM:
            if text == "??":
                text = "?"
            else:
                questions = True
                number = int(text[1:]) if len(text) > 1 else highest + 1
                highest = max(highest, number)
                text = f"${number}"
        elif kind == NATIVE:
            native = True
            highest = max(highest, int(text[1:]))
        out.append(text)
        size += len(text)
        if kind in (SPACE, COMMENT):
            continue
        if done:
            several = several or text != ";"  # empty statements (;;) are nothing
            continue
        if text == ";" and depth == 0:
            done = True
            continue
        if text == "(":
            depth += 1
        elif text == ")":
            depth = max(depth - 1, 0)
        elif kind == IDENT and depth == 0:
            words.append(text.upper())
        significant.append((kind, text))
        end = size
    verb = words[0] if words else ""
    main = verb
    if verb == "WITH":
        main = next((w for w in words[1:] if w in _VERBS), "")
    return Analysis(
        sql="".join(out),
        params=highest,
        verb=verb,
        main=main,
        returning="RETURNING" in words,
        end=end,
        table=_insert_target(significant) if verb == "INSERT" else None,
        several=several,
        mixed=native and questions,
    )


def _insert_target(tokens: list[tuple[int, str]]) -> str | None:
    """``INSERT INTO [schema.]table``: the table as written, quotes kept."""
    if len(tokens) < 3 or tokens[1][1].upper() != "INTO":
        return None
    parts: list[str] = []
    i = 2
    while i < len(tokens) and tokens[i][0] in (IDENT, QUOTED):
        parts.append(tokens[i][1])
        if i + 1 < len(tokens) and tokens[i + 1][1] == ".":
            i += 2
        else:
            break
    return ".".join(parts) or None


@lru_cache(maxsize=1024)
def with_returning(analysis: Analysis, columns: str) -> str:
    """The statement with ``RETURNING <columns>`` appended after its last token."""
    return f"{analysis.sql[: analysis.end]} RETURNING {columns}{analysis.sql[analysis.end :]}"


def split_script(script: str) -> list[str]:
    """Split a migration script into statements at top-level semicolons.

    Semicolons inside strings, quoted names, comments, dollar-quoted function bodies and
    SQL-standard ``BEGIN ATOMIC ... END`` bodies do not split.

    >>> split_script("CREATE TABLE a (x text);\\n-- seed\\nINSERT INTO a VALUES (';');")
    ['CREATE TABLE a (x text);', "-- seed\\nINSERT INTO a VALUES (';');"]
    """
    statements: list[str] = []
    current: list[str] = []
    has_code = False
    atomic = 0  # depth of BEGIN ATOMIC ... END (CASE ... END nests inside)
    previous = ""
    for kind, text in tokenize(script):
        current.append(text)
        if kind in (SPACE, COMMENT):
            continue
        has_code = True
        word = text.upper() if kind == IDENT else ""
        if (word == "ATOMIC" and previous == "BEGIN") or (atomic and word == "CASE"):
            atomic += 1
        elif atomic and word == "END":
            atomic -= 1
        elif text == ";" and not atomic:
            statements.append("".join(current).strip())
            current, has_code = [], False
        previous = word
    if has_code:
        statements.append("".join(current).strip())
    return statements
