"""The config tool: settings by key, typed getters, one clear error per bad or missing value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import pytest

import tools.config
from microcore.tooling import ConfigurationError, KernelView, Owner
from tools.config import Config
from tools.config.config_tool import ConfigTool


class Settings:
    """The one part of the kernel the config tool reads."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self.settings = dict(settings)


def config_of(**settings: str) -> ConfigTool:
    return ConfigTool(cast(KernelView, Settings(settings)))


def test_config_facade_exports_config() -> None:
    """``from tools.config import Config`` is the whole public surface, listed in ``__all__``."""
    assert tools.config.__all__ == ("Config",)
    assert all(hasattr(tools.config, name) for name in tools.config.__all__)


def test_config_bind_hands_out_the_tool_itself() -> None:
    """Every plugin gets the same settings: ``bind`` returns the tool, typed as ``Config``."""
    config = config_of(A="1")
    bound: Config = config.bind(Owner("shop.OrderPlugin"))
    assert bound is config
    assert bound.get("A") == "1"


def test_config_get_falls_back_to_the_default() -> None:
    """An unset key answers the default (None unless given); a set one its value."""
    config = config_of(PAYMENTS_URL="http://pay")
    assert config.get("PAYMENTS_URL") == "http://pay"
    assert config.get("MISSING") is None
    assert config.get("MISSING", "x") == "x"


def test_config_require_names_every_missing_key() -> None:
    """``require`` answers the values, or raises once naming every unset or empty key."""
    config = config_of(A="1", B="2", EMPTY="")
    assert config.require("A", "B") == {"A": "1", "B": "2"}
    with pytest.raises(ConfigurationError, match=r"missing required setting\(s\): EMPTY, C;"):
        config.require("A", "EMPTY", "C")


def test_config_get_int_parses_or_names_the_key() -> None:
    """Integers parse; unset or empty is the default; anything else names the key and value."""
    config = config_of(N="12", EMPTY="", BAD="twelve")
    assert config.get_int("N", 1) == 12
    assert config.get_int("EMPTY", 3) == 3
    assert config.get_int("UNSET", 4) == 4
    with pytest.raises(ConfigurationError, match="BAD must be an integer, got 'twelve'"):
        config.get_int("BAD", 1)


def test_config_get_float_parses_or_names_the_key() -> None:
    """Numbers parse; unset or empty is the default; anything else names the key and value."""
    config = config_of(X="1.5", EMPTY="", BAD="fast")
    assert config.get_float("X", 0.0) == 1.5
    assert config.get_float("EMPTY", 2.5) == 2.5
    assert config.get_float("UNSET", 3.5) == 3.5
    with pytest.raises(ConfigurationError, match="BAD must be a number, got 'fast'"):
        config.get_float("BAD", 1.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_config_get_bool_reads_the_usual_spellings(raw: str, expected: bool) -> None:
    """1/true/yes/on and 0/false/no/off (any case, spaces trimmed) and empty are booleans."""
    assert config_of(FLAG=raw).get_bool("FLAG", not expected) is expected


def test_config_get_bool_defaults_and_refuses_anything_else() -> None:
    """Unset is the default; an unknown spelling names the key and value."""
    config = config_of(FLAG="maybe")
    assert config.get_bool("UNSET") is False
    assert config.get_bool("UNSET", True) is True
    with pytest.raises(ConfigurationError, match="FLAG must be true or false, got 'maybe'"):
        config.get_bool("FLAG")


def test_config_environment_defaults_to_production() -> None:
    """Unset ``MICROCORE_ENV`` is production; ``development`` (any case) is development."""
    assert config_of().environment == "production"
    assert config_of().development is False
    assert config_of(MICROCORE_ENV=" Development ").environment == "development"
    assert config_of(MICROCORE_ENV="development").development is True


async def test_config_setup_refuses_an_unknown_environment() -> None:
    """A misspelt ``MICROCORE_ENV`` fails the tool's set-up, naming both allowed values."""
    with pytest.raises(ConfigurationError, match="'development' or 'production', got 'prod'"):
        await config_of(MICROCORE_ENV="prod").setup()
    await config_of(MICROCORE_ENV="production").setup()
