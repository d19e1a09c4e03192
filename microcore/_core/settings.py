"""Settings: the process environment over a project's ``.env`` file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigurationError

__all__ = ("load_settings", "parse_dotenv")


def parse_dotenv(text: str, *, source: str = ".env") -> dict[str, str]:
    """Parse ``KEY=value`` lines; ``#`` comments, blank lines, ``export`` and quotes allowed.

    >>> parse_dotenv('A=1\\nexport B="two words"  # note\\n')
    {'A': '1', 'B': 'two words'}
    """
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum() or key[0].isdigit():
            raise ConfigurationError(f"{source}:{lineno}: expected KEY=value, got {raw.strip()!r}")
        value = value.strip()
        if value[:1] in ('"', "'"):
            quote = value[0]
            end = value.find(quote, 1)
            if end == -1:
                raise ConfigurationError(f"{source}:{lineno}: unterminated quote in {key}")
            value = value[1:end]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def load_settings(root: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The project's settings: ``root/.env`` overridden by the environment."""
    env = dict(os.environ if environ is None else environ)
    dotenv = root / ".env"
    values = parse_dotenv(dotenv.read_text(), source=str(dotenv)) if dotenv.is_file() else {}
    values.update(env)
    return values
