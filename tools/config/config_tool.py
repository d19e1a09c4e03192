"""The ``config`` tool: settings from the environment and the project's ``.env``."""

from __future__ import annotations

from typing import Protocol

from microcore import Tool
from microcore.tooling import ConfigurationError, KernelView, Owner

__all__ = ("Config", "ConfigTool")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Config(Protocol):
    """Settings, read from the process environment (which wins) and the project's ``.env``.

    What a plugin (or a tool) receives when it names ``config`` in its constructor::

        from tools.config import Config

        class PaymentsPlugin(Plugin):
            def __init__(self, config: Config):
                self.url = config.get("PAYMENTS_URL", "http://localhost:9000")
                self.key = config.require("PAYMENTS_KEY")["PAYMENTS_KEY"]
                self.retries = config.get_int("PAYMENTS_RETRIES", 3)

    Every malformed or missing value is a :class:`~microcore.tooling.ConfigurationError`
    naming the key.
    """

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default`` when it is unset."""
        ...

    def require(self, *keys: str) -> dict[str, str]:
        """The values of ``keys``; one error names every unset or empty key."""
        ...

    def get_int(self, key: str, default: int) -> int:
        """``key`` as an integer; ``default`` when unset or empty."""
        ...

    def get_float(self, key: str, default: float) -> float:
        """``key`` as a number; ``default`` when unset or empty."""
        ...

    def get_bool(self, key: str, default: bool = False) -> bool:
        """``key`` as a boolean: 1/true/yes/on or 0/false/no/off (empty is false)."""
        ...

    @property
    def environment(self) -> str:
        """``MICROCORE_ENV``: ``development`` or ``production`` (the default)."""
        ...

    @property
    def development(self) -> bool:
        """True when ``MICROCORE_ENV=development``."""
        ...


class ConfigTool(Tool):
    """Read settings: the process environment wins over ``.env``.

    >>> self.config.get("PAYMENTS_URL", "http://localhost:9000")
    >>> self.config.require("PAYMENTS_URL", "PAYMENTS_KEY")   # raises naming every missing key
    """

    name = "config"

    def __init__(self, kernel: KernelView) -> None:
        self._kernel = kernel

    def bind(self, owner: Owner) -> Config:
        """The tool itself: settings are the same for every plugin."""
        return self

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default`` when it is unset."""
        return self._kernel.settings.get(key, default)

    def require(self, *keys: str) -> dict[str, str]:
        """The values of ``keys``; one error names every unset or empty key."""
        missing = [k for k in keys if not self._kernel.settings.get(k)]
        if missing:
            raise ConfigurationError(
                f"missing required setting(s): {', '.join(missing)}; "
                "set them in the environment or in .env (see .env.example)"
            )
        return {k: self._kernel.settings[k] for k in keys}

    def get_int(self, key: str, default: int) -> int:
        """``key`` as an integer; a malformed value is a clear error."""
        raw = self.get(key)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{key} must be an integer, got {raw!r}") from exc

    def get_float(self, key: str, default: float) -> float:
        """``key`` as a number; a malformed value is a clear error."""
        raw = self.get(key)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{key} must be a number, got {raw!r}") from exc

    def get_bool(self, key: str, default: bool = False) -> bool:
        """``key`` as a boolean: 1/true/yes/on or 0/false/no/off."""
        raw = self.get(key)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigurationError(f"{key} must be true or false, got {raw!r}")

    @property
    def environment(self) -> str:
        """``MICROCORE_ENV``: ``development`` or ``production`` (the default)."""
        env = (self.get("MICROCORE_ENV") or "production").strip().lower()
        if env not in ("development", "production"):
            raise ConfigurationError(
                f"MICROCORE_ENV must be 'development' or 'production', got {env!r}"
            )
        return env

    @property
    def development(self) -> bool:
        """True when ``MICROCORE_ENV=development``."""
        return self.environment == "development"

    async def setup(self) -> None:
        self.environment  # noqa: B018 - validate MICROCORE_ENV at boot, not at first use
