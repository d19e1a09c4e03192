"""The ``state`` tool: a namespaced key-value store with TTLs and atomic counters.

``STATE_URL`` picks the backend: ``memory://`` (the default, this process only) or
``redis://[user:password@]host:6379/0`` (``rediss://`` for TLS), shared by every replica;
``STATE_PREFIX`` (default ``microcore``) starts every Redis key name.
State is not owned by plugins: it survives hot reloads of the plugins that wrote it.
"""

from __future__ import annotations

import structlog

from microcore import Tool
from microcore.tooling import ConfigurationError, Owner
from tools.config import Config

from ._backend import StateBackend
from ._errors import StateError
from ._state import State
from .memory import MemoryBackend

__all__ = ("StateTool", "create_backend")

_log = structlog.get_logger("microcore.state", tool="state")

DEFAULT_URL = "memory://"
DEFAULT_PREFIX = "microcore"
SUPPORTED = "memory:// (built in), redis://host:6379/0, rediss:// (TLS)"


def create_backend(url: str | None, *, prefix: str = DEFAULT_PREFIX) -> StateBackend:
    """The backend ``STATE_URL`` names; an unknown scheme is refused, naming the supported ones.

    ``prefix`` starts every Redis key name (``STATE_PREFIX``).
    """
    raw = (url or "").strip() or DEFAULT_URL
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(f"STATE_URL {raw!r} is not a URL; supported: {SUPPORTED}")
    if scheme == "memory":
        if rest.strip("/"):
            raise ConfigurationError(f"STATE_URL {raw!r}: memory:// takes no host or path")
        return MemoryBackend()
    if scheme in ("redis", "rediss"):
        try:
            from .redis import RedisBackend  # redis is optional: imported only when used
        except ImportError as exc:
            raise ConfigurationError(
                f"STATE_URL uses {scheme}://, which needs the redis package ({exc}); "
                "install it: pip install 'microcore[redis]'"
            ) from exc
        return RedisBackend(raw, prefix=prefix)
    raise ConfigurationError(
        f"STATE_URL scheme {scheme!r} is not supported; supported: {SUPPORTED}"
    )


class StateTool(Tool, State):
    """Shared state by namespace and key; values are plain data (msgpack-able), copied in and out.

    >>> await self.state.set("carts", user_id, {"items": [1, 2]}, ttl=3600)
    >>> await self.state.get("carts", user_id, default={})
    {'items': [1, 2]}
    >>> await self.state.incr("rate", f"{ip}:{minute}")      # atomic: 1, 2, 3 ...
    """

    name = "state"

    def __init__(self, config: Config) -> None:
        State.__init__(self)
        self._config = config

    async def setup(self) -> None:
        prefix = (self._config.get("STATE_PREFIX") or DEFAULT_PREFIX).strip()
        if not prefix or any(c.isspace() for c in prefix):
            raise ConfigurationError(
                f"STATE_PREFIX must be a non-empty name without spaces, got {prefix!r}"
            )
        store = create_backend(self._config.get("STATE_URL"), prefix=prefix)
        await store.open()
        self._store = store
        _log.info("state_ready", store=store.description)

    async def shutdown(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    async def probe(self) -> str | None:
        """Readiness: the store answers a ping now."""
        store = self._store
        if store is None:
            return "the state store is not open"
        try:
            await store.ping()
        except StateError as exc:
            return str(exc)
        return None

    def bind(self, owner: Owner) -> State:
        """Every plugin shares the tool itself: state is not owned by plugins."""
        return self
