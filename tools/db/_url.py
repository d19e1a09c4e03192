"""``DATABASE_URL``: which driver, which database.

* ``sqlite:///data/app.db``   a file relative to the project root (the default)
* ``sqlite:////var/lib/app.db``  an absolute path
* ``sqlite://:memory:``       a private in-memory database (tests)
* ``postgresql://user:password@host:5432/dbname`` (or ``postgres://``) PostgreSQL
  through asyncpg; query parameters (``?sslmode=require``, ``?search_path=app``)
  are libpq connection options or server settings, as asyncpg reads them
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec

from microcore.tooling import ConfigurationError

__all__ = ("DEFAULT_URL", "DatabaseURL", "parse_url")

DEFAULT_URL = "sqlite:///data/app.db"

# Schemes with a backend in this folder, and how to say it in an error.
SUPPORTED = {
    "sqlite": "sqlite:///relative/app.db, sqlite:////absolute/app.db, sqlite://:memory:",
    "postgresql": "postgresql://user:password@host:5432/dbname",
}
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})

_EXAMPLES = (
    "sqlite:///data/app.db (relative to the project), sqlite:////abs/app.db, sqlite://:memory:, "
    "postgresql://user:password@host:5432/dbname"
)


class DatabaseURL(msgspec.Struct, frozen=True):
    """A parsed ``DATABASE_URL``.

    SQLite: ``path`` is the file, ``None`` for an in-memory database. PostgreSQL:
    ``dsn`` is the URL as given (``str()`` and ``repr()`` hide its password).
    """

    scheme: str
    path: Path | None
    dsn: str = ""

    @property
    def memory(self) -> bool:
        return self.scheme == "sqlite" and self.path is None

    def __str__(self) -> str:
        if self.dsn:
            return redact(self.dsn)
        return f"{self.scheme}://:memory:" if self.path is None else f"{self.scheme}:///{self.path}"

    def __repr__(self) -> str:
        return f"DatabaseURL({str(self)!r})"


def redact(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, for logs and error messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def parse_url(raw: str | None, *, root: Path) -> DatabaseURL:
    """Parse ``raw`` (``None`` or empty: the default); relative paths resolve against ``root``."""
    url = (raw or "").strip() or DEFAULT_URL
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(f"DATABASE_URL {url!r} is not a URL; examples: {_EXAMPLES}")
    scheme = scheme.lower()
    if scheme in POSTGRES_SCHEMES:
        return DatabaseURL("postgresql", None, dsn=url)
    if scheme != "sqlite":
        raise ConfigurationError(
            f"DATABASE_URL scheme {scheme!r} is not supported; supported: "
            f"{', '.join(SUPPORTED.values())}"
        )
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"DATABASE_URL {url!r}: SQLite URLs take no query string or fragment; "
            "tune the database with DATABASE_SYNCHRONOUS, DATABASE_BUSY_TIMEOUT, DATABASE_READERS"
        )
    if rest in (":memory:", "/:memory:"):
        return DatabaseURL("sqlite", None)
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"DATABASE_URL {url!r}: a SQLite URL has no host; write sqlite:///relative/app.db "
            "(three slashes) or sqlite:////absolute/app.db (four)"
        )
    path_text = rest[1:]
    if not path_text or path_text.endswith("/"):
        raise ConfigurationError(f"DATABASE_URL {url!r} names no database file; e.g. {DEFAULT_URL}")
    path = Path(path_text)
    return DatabaseURL("sqlite", path if path.is_absolute() else (root / path).resolve())
