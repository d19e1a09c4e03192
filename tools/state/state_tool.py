"""The ``state`` tool: a namespaced key-value store with TTLs and atomic counters.

``STATE_URL`` picks the store: ``memory://`` (the default, this process only) or
``redis://[user:password@]host:6379/0`` (``rediss://`` for TLS), shared by every replica;
``STATE_PREFIX`` (default ``microcore``) starts every Redis key name.
State is not owned by plugins: it survives hot reloads of the plugins that wrote it.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from microcore import Tool
from microcore.tooling import ConfigurationError

from ._errors import StateError
from ._memory import MemoryStore

__all__ = ("StateError", "StateTool")

_log = structlog.get_logger("microcore").bind(tool="state")

DEFAULT_URL = "memory://"
DEFAULT_PREFIX = "microcore"
SUPPORTED = "memory:// (built in), redis://host:6379/0, rediss:// (TLS)"


class Store(Protocol):
    """What a state backend provides: ``_memory.MemoryStore``, ``_redis.RedisStore``."""

    description: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, namespace: str, key: str, default: Any = None) -> Any: ...

    async def set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None: ...

    async def delete(self, namespace: str, key: str) -> bool: ...

    async def incr(self, namespace: str, key: str, by: int = 1) -> int: ...

    async def keys(self, namespace: str) -> list[str]: ...


class _Config(Protocol):
    def get(self, key: str, default: str | None = None) -> str | None: ...


def create_store(url: str | None, *, prefix: str = DEFAULT_PREFIX) -> Store:
    """The store ``STATE_URL`` names; an unknown scheme is refused, naming the supported ones.

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
        return MemoryStore()
    if scheme in ("redis", "rediss"):
        try:
            from . import _redis  # redis is optional: imported only when used
        except ImportError as exc:
            raise ConfigurationError(
                f"STATE_URL uses {scheme}://, which needs the redis package ({exc}); "
                "install it: pip install 'microcore[redis]'"
            ) from exc
        return _redis.RedisStore(raw, prefix=prefix)
    raise ConfigurationError(
        f"STATE_URL scheme {scheme!r} is not supported; supported: {SUPPORTED}"
    )


def _check(namespace: object, key: object) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise StateError(f"the namespace must be a non-empty string, got {namespace!r}")
    if not isinstance(key, str):
        raise StateError(f"the key must be a string, got {key!r}")


class StateTool(Tool):
    """Shared state by namespace and key; values are plain data (msgpack-able), copied in and out.

    >>> await self.state.set("carts", user_id, {"items": [1, 2]}, ttl=3600)
    >>> await self.state.get("carts", user_id, default={})
    {'items': [1, 2]}
    >>> await self.state.incr("rate", f"{ip}:{minute}")      # atomic: 1, 2, 3 ...
    """

    name = "state"

    def __init__(self, config: _Config) -> None:
        self._config = config
        self._store: Store | None = None

    async def setup(self) -> None:
        prefix = (self._config.get("STATE_PREFIX") or DEFAULT_PREFIX).strip()
        if not prefix or any(c.isspace() for c in prefix):
            raise ConfigurationError(
                f"STATE_PREFIX must be a non-empty name without spaces, got {prefix!r}"
            )
        store = create_store(self._config.get("STATE_URL"), prefix=prefix)
        await store.open()
        self._store = store
        _log.info("state_ready", store=store.description)

    async def shutdown(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    def _backend(self) -> Store:
        if self._store is None:
            raise StateError("the state store is not open (the state tool is not set up)")
        return self._store

    async def get(self, namespace: str, key: str, default: Any = None) -> Any:
        """The value under ``namespace``/``key``, or ``default`` when unset or expired."""
        _check(namespace, key)
        return await self._backend().get(namespace, key, default)

    async def set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl`` (seconds) it expires, else it stays until deleted."""
        _check(namespace, key)
        await self._backend().set(namespace, key, value, ttl)

    async def delete(self, namespace: str, key: str) -> bool:
        """Remove the key; whether it existed."""
        _check(namespace, key)
        return await self._backend().delete(namespace, key)

    async def incr(self, namespace: str, key: str, by: int = 1) -> int:
        """Add ``by`` atomically (an unset key counts from 0) and return the new value.

        The key keeps its TTL, if it has one.
        """
        _check(namespace, key)
        return await self._backend().incr(namespace, key, by)

    async def keys(self, namespace: str) -> list[str]:
        """The live keys of ``namespace``, sorted."""
        _check(namespace, "")
        return await self._backend().keys(namespace)
