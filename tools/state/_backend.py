"""The backend seam: what the ``state`` tool needs from a store, whatever ``STATE_URL`` says.

Backends: :mod:`tools.state.memory` (``memory://``) and :mod:`tools.state.redis`
(``redis://``, ``rediss://``); ``state_tool.create_backend`` picks one from the URL.
Values cross the seam msgpack-encoded by :func:`encode`, so what one backend stores,
every other can too.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from ._errors import StateError

__all__ = ("StateBackend", "encode")

_encoder = msgspec.msgpack.Encoder()


class StateBackend(Protocol):
    """A connected store: the :class:`~tools.state.State` calls, checked arguments in."""

    description: str  # for logs: the URL without its password

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`StateError` unless the store answers now."""
        ...

    async def get(self, namespace: str, key: str, default: Any = None) -> Any: ...

    async def set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None: ...

    async def delete(self, namespace: str, key: str) -> bool: ...

    async def incr(self, namespace: str, key: str, by: int = 1) -> int: ...

    async def claim(self, namespace: str, key: str, ttl: float, holder: str | None = None) -> bool:
        """Set ``key`` to ``holder`` (``True`` when None) for ``ttl`` unless it is set to
        something else: one atomic step."""
        ...

    async def release(self, namespace: str, key: str, holder: str) -> bool:
        """Delete ``key`` if it holds ``holder``: one atomic step."""
        ...

    async def keys(self, namespace: str) -> list[str]: ...


def encode(namespace: str, key: str, value: object) -> bytes:
    """``value`` as msgpack, or a :class:`StateError` saying what can be stored."""
    try:
        return _encoder.encode(value)
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise StateError(
            f"state value for {namespace!r}/{key!r} cannot be stored: {exc}; store str, int, "
            "float, bool, None, bytes, lists, dicts or msgspec Structs"
        ) from exc
