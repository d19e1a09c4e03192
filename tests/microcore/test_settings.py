"""Settings: .env parsing and precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from microcore._core.settings import load_settings, parse_dotenv
from microcore.tooling import ConfigurationError


def test_parse_dotenv_reads_comments_quotes_and_export() -> None:
    """Comments, blank lines, export prefixes, quotes and inline comments are understood."""
    text = (
        "# comment\n\nA=1\nexport B = two words # trailing\n"
        "C=\"quoted # not a comment\"\nD='single'\nE=\n"
    )
    assert parse_dotenv(text) == {
        "A": "1",
        "B": "two words",
        "C": "quoted # not a comment",
        "D": "single",
        "E": "",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JUSTAKEY\n", r"\.env:1: expected KEY=value, got 'JUSTAKEY'"),
        ("1A=x\n", r"\.env:1: expected KEY=value"),
        ("A=1\nB='open\n", r"\.env:2: unterminated quote in B"),
    ],
)
def test_parse_dotenv_errors_name_the_line(text: str, message: str) -> None:
    """A malformed line is a configuration error naming file and line."""
    with pytest.raises(ConfigurationError, match=message):
        parse_dotenv(text)


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    """The process environment overrides .env; without .env only the environment counts."""
    assert load_settings(tmp_path, {"X": "env"}) == {"X": "env"}
    (tmp_path / ".env").write_text("X=file\nY=file\n")
    assert load_settings(tmp_path, {"X": "env"}) == {"X": "env", "Y": "file"}
