"""DATABASE_URL parsing: relative, absolute and in-memory SQLite, PostgreSQL; clear errors
otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from microcore.tooling import ConfigurationError
from tools.db._url import DEFAULT_URL, parse_url

ROOT = Path("/srv/project")


def test_parse_url_relative_path_resolves_against_project_root() -> None:
    """Three slashes: a path relative to the project root."""
    assert parse_url("sqlite:///data/app.db", root=ROOT).path == ROOT / "data/app.db"


def test_parse_url_absolute_path() -> None:
    """Four slashes: an absolute path."""
    assert parse_url("sqlite:////var/lib/app.db", root=ROOT).path == Path("/var/lib/app.db")


@pytest.mark.parametrize("url", ["sqlite://:memory:", "sqlite:///:memory:", " sqlite://:memory: "])
def test_parse_url_memory(url: str) -> None:
    """:memory: (with two or three slashes) is an in-memory database."""
    parsed = parse_url(url, root=ROOT)
    assert parsed.memory and parsed.path is None
    assert str(parsed) == "sqlite://:memory:"


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_parse_url_default_is_data_app_db(raw: str | None) -> None:
    """Unset means sqlite:///data/app.db under the project."""
    assert DEFAULT_URL == "sqlite:///data/app.db"
    assert parse_url(raw, root=ROOT).path == ROOT / "data/app.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_parse_url_postgresql_keeps_the_url_for_the_driver(scheme: str) -> None:
    """postgresql:// and postgres:// select PostgreSQL; the URL goes to asyncpg unchanged."""
    raw = f"{scheme}://app:pw@db.internal:5433/shop?sslmode=require"
    parsed = parse_url(raw, root=ROOT)
    assert (parsed.scheme, parsed.dsn, parsed.path, parsed.memory) == (
        "postgresql",
        raw,
        None,
        False,
    )


def test_parse_url_postgresql_hides_the_password_when_shown() -> None:
    """str() and repr() (logs, errors) never show the password."""
    parsed = parse_url("postgresql://app:s3cr%40t@db:5432/shop", root=ROOT)
    assert str(parsed) == "postgresql://app:***@db:5432/shop"
    assert "s3cr" not in repr(parsed)
    assert str(parse_url("postgresql://app@db/shop", root=ROOT)) == "postgresql://app@db/shop"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("app.db", "is not a URL; examples: sqlite:///data/app.db"),
        ("mysql://u@h/db", "scheme 'mysql' is not supported; supported: sqlite:///relative/app.db"),
        ("sqlite://host/app.db", "has no host; write sqlite:///relative/app.db"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///data/", "names no database file"),
        ("sqlite:///app.db?mode=ro", "take no query string"),
    ],
)
def test_parse_url_errors_say_how_to_fix(url: str, message: str) -> None:
    """Every malformed or unsupported URL is refused with a message that shows the fix."""
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_url(url, root=ROOT)
