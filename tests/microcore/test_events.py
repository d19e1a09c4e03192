"""Subject patterns: ``*`` is one token, ``>`` one or more trailing tokens; lookups are cached."""

from __future__ import annotations

import pytest

from microcore.events import SubjectTrie, check_name, check_pattern
from microcore.tooling import MicroCoreError, RegistrationError


def _trie(*patterns: str) -> SubjectTrie[str]:
    trie: SubjectTrie[str] = SubjectTrie()
    for pattern in patterns:
        trie.add(pattern, pattern)
    return trie


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("product.created", {"product.created", "product.*", "*.created", ">", "product.>"}),
        ("product.a.b", {">", "product.>", "product.*.b"}),
        ("product", {">"}),
        ("order.paid", {">", "*.paid"}),
    ],
)
def test_trie_matches_exact_one_token_and_trailing_wildcards(name: str, expected: set[str]) -> None:
    """``*`` matches exactly one token, ``>`` one or more trailing tokens."""
    trie = _trie(
        "product.created", "product.*", "*.created", ">", "product.>", "product.*.b", "*.paid"
    )
    assert set(trie.match(name)) == expected


def test_trie_rest_wildcard_needs_at_least_one_token() -> None:
    """``order.>`` does not match ``order`` itself."""
    assert _trie("order.>").match("order") == ()


def test_trie_overlapping_patterns_each_match() -> None:
    """Two subscriptions with overlapping patterns both receive a matching name."""
    trie: SubjectTrie[str] = SubjectTrie()
    trie.add("a.*", "x")
    trie.add("a.>", "y")
    assert sorted(trie.match("a.b")) == ["x", "y"]


def test_trie_cache_is_invalidated_by_add_and_remove() -> None:
    """A cached lookup reflects subscriptions added or removed afterwards."""
    trie = _trie("a.b")
    first = trie.match("a.b")
    assert trie.match("a.b") is first  # served from the cache
    trie.add("a.*", "a.*")
    assert set(trie.match("a.b")) == {"a.b", "a.*"}
    assert trie.remove("a.b", "a.b")
    assert trie.match("a.b") == ("a.*",)
    assert not trie.remove("a.b", "a.b")
    assert not trie.remove("x.y.z", "nope")
    assert len(trie) == 1


def test_trie_remove_prunes_empty_branches() -> None:
    """Removing the last value under a branch leaves no empty nodes behind."""
    trie = _trie("a.b.c")
    trie.remove("a.b.c", "a.b.c")
    assert trie._root.children == {}


def test_trie_with_thousands_of_patterns_matches_only_the_relevant_ones() -> None:
    """5000 subscriptions: a publish finds exactly its own, and repeats hit the cache."""
    trie: SubjectTrie[int] = SubjectTrie()
    for i in range(5000):
        trie.add(f"svc{i}.event.*", i)
    trie.add("svc42.>", -1)
    assert sorted(trie.match("svc42.event.done")) == [-1, 42]
    assert trie.match("svc42.event.done") is trie.match("svc42.event.done")


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a.b*"])
def test_check_name_refuses_malformed_names(name: str) -> None:
    """Published names are concrete dot-separated tokens without whitespace."""
    with pytest.raises(MicroCoreError):
        check_name(name)


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a.b*", "a.>x", "a\tb"])
def test_check_pattern_refuses_malformed_patterns(pattern: str) -> None:
    """``>`` only last; wildcards are whole tokens; no empty tokens."""
    with pytest.raises(RegistrationError):
        check_pattern(pattern)


def test_check_pattern_accepts_wildcards() -> None:
    """Valid patterns come back as tokens."""
    assert check_pattern("a.*.>") == ["a", "*", ">"]


def test_trie_adding_a_value_twice_keeps_one() -> None:
    """The same value under the same pattern is stored once; removing a value the pattern
    does not hold answers False."""
    trie = SubjectTrie[str]()
    trie.add("order.*", "audit")
    trie.add("order.*", "audit")
    assert len(trie) == 1
    assert trie.match("order.paid") == ("audit",)
    assert trie.remove("order.*", "billing") is False
    assert len(trie) == 1


def test_trie_match_cache_starts_afresh_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-name cache is bounded: past its limit it is cleared, answers stay right."""
    monkeypatch.setattr("microcore._names._CACHE_LIMIT", 2)
    trie = SubjectTrie[str]()
    trie.add("a.>", "all")
    for name in ("a.b", "a.c", "a.d", "a.b"):
        assert trie.match(name) == ("all",)
    assert len(trie._cache) <= 2
