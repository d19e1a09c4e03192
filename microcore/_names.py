"""Event names and patterns: the one grammar the bus, the checks, the system tool and tests share.

Names are dot-separated tokens (``product.created``). In a pattern ``*``
matches exactly one token and ``>`` (last token only) one or more trailing
tokens: ``product.*`` matches ``product.created`` but not ``product.a.b``;
``order.>`` matches both ``order.paid`` and ``order.line.added``.

Publishing looks a name up once and then hits the cache until a subscription
is added or removed, so the cost of a publish does not grow with the number
of subscriptions; a miss walks the trie, which only visits the branches the
name's tokens can reach.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._core.errors import EventNameError, MicroCoreError, RegistrationError

__all__ = ("DLQ_PREFIX", "SubjectTrie", "check_name", "check_pattern", "matches")

V = TypeVar("V")

ONE = "*"
REST = ">"
_CACHE_LIMIT = 10_000  # names remembered between changes; past it the cache starts afresh
_FORBIDDEN = frozenset(" \t\r\n")

DLQ_PREFIX = "_dlq."
"""Dead letters of ``name`` are published as ``_dlq.<name>``."""


def _tokens(text: str, *, what: str, error: type[MicroCoreError]) -> list[str]:
    if not isinstance(text, str) or not text:
        raise error(f"event {what} must be a non-empty string, got {text!r}")
    tokens = text.split(".")
    for token in tokens:
        if not token:
            raise error(
                f"event {what} {text!r} has an empty token; use dot-separated words, "
                "e.g. 'product.created'"
            )
        if _FORBIDDEN.intersection(token):
            raise error(f"event {what} {text!r} contains whitespace")
    return tokens


def check_name(name: str) -> None:
    """Refuse a malformed event name (wildcards belong in subscription patterns only)."""
    for token in _tokens(name, what="name", error=EventNameError):
        if ONE in token or REST in token:
            raise EventNameError(
                f"event name {name!r} contains a wildcard; '*' and '>' are for "
                "subscribe patterns, publish a concrete name such as 'product.created'"
            )


def check_pattern(pattern: str) -> list[str]:
    """Validate a subscription pattern and return its tokens."""
    tokens = _tokens(pattern, what="pattern", error=RegistrationError)
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if token in (ONE, REST):
            if token == REST and index != last:
                raise RegistrationError(
                    f"event pattern {pattern!r}: '>' must be the last token, e.g. 'order.>'"
                )
        elif ONE in token or REST in token:
            raise RegistrationError(
                f"event pattern {pattern!r}: a wildcard must be a whole token "
                "('product.*', not 'product.cr*')"
            )
    return tokens


def matches(pattern: str, name: str) -> bool:
    """Whether event ``name`` matches ``pattern`` (``*``: one token, ``>``: the rest).

    >>> matches("order.>", "order.paid.late")
    True
    >>> matches("product.*", "product.a.b")
    False
    """
    want, got = pattern.split("."), name.split(".")
    for index, token in enumerate(want):
        if token == REST:
            return len(got) > index
        if index >= len(got) or (token != ONE and token != got[index]):
            return False
    return len(want) == len(got)


class _Node(Generic[V]):
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] = {}
        self.values: dict[V, None] = {}  # an insertion-ordered set


class SubjectTrie(Generic[V]):
    """Map patterns to values; :meth:`match` returns every value whose pattern matches a name.

    >>> trie = SubjectTrie[str]()
    >>> trie.add("order.>", "audit")
    >>> trie.match("order.line.added")
    ('audit',)
    """

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._cache: dict[str, tuple[V, ...]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, value: V) -> None:
        node = self._root
        for token in check_pattern(pattern):
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = _Node()
            node = child
        if value not in node.values:
            node.values[value] = None
            self._size += 1
        self._cache.clear()

    def remove(self, pattern: str, value: V) -> bool:
        """Remove ``value`` from ``pattern``; prunes empty branches. False if it was not there."""
        path: list[tuple[_Node[V], str]] = []
        node = self._root
        for token in pattern.split("."):
            child = node.children.get(token)
            if child is None:
                return False
            path.append((node, token))
            node = child
        if value not in node.values:
            return False
        del node.values[value]
        self._size -= 1
        for parent, token in reversed(path):
            child = parent.children[token]
            if child.values or child.children:
                break
            del parent.children[token]
        self._cache.clear()
        return True

    def match(self, name: str) -> tuple[V, ...]:
        """Every value whose pattern matches ``name`` (cached until the trie changes)."""
        found = self._cache.get(name)
        if found is not None:
            return found
        check_name(name)
        out: dict[V, None] = {}
        self._collect(self._root, name.split("."), 0, out)
        found = tuple(out)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[name] = found
        return found

    def _collect(self, node: _Node[V], tokens: list[str], index: int, out: dict[V, None]) -> None:
        if index == len(tokens):
            out.update(node.values)
            return
        children = node.children
        exact = children.get(tokens[index])
        if exact is not None:
            self._collect(exact, tokens, index + 1, out)
        one = children.get(ONE)
        if one is not None:
            self._collect(one, tokens, index + 1, out)
        rest = children.get(REST)
        if rest is not None:
            out.update(rest.values)
