"""The in-memory state store: namespaced keys, TTL expiry, atomic ``incr`` and ``claim``.

Values are stored msgpack-encoded, so a reader gets its own copy (mutating it
changes nothing stored) and what fits here also fits Redis. Expiry is lazy on
access plus a heap that forgets expired keys as time passes, so keys written
once and never read again do not pile up.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ._backend import encode
from ._errors import StateError

__all__ = ("MemoryBackend",)

Clock = Callable[[], float]

_COMPACT_AT = 2048

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Entry:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: bytes, expires_at: float | None) -> None:
        self.value = value
        self.expires_at = expires_at


class MemoryBackend:
    """State in this process's memory (lost on restart, kept across plugin reloads).

    ``clock`` is a monotonic clock in seconds; tests pass a controllable one.
    """

    description = "memory://"

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, dict[str, _Entry]] = {}
        self._expiry: list[tuple[float, str, str]] = []  # (expires_at, namespace, key)
        self._compact_at = _COMPACT_AT

    async def open(self) -> None:
        """Nothing to connect."""

    async def ping(self) -> None:
        """Memory always answers."""

    async def close(self) -> None:
        self._data.clear()
        self._expiry.clear()

    # -- expiry --------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            expires_at, namespace, key = heapq.heappop(self._expiry)
            keys = self._data.get(namespace)
            entry = keys.get(key) if keys else None
            # The key may have been overwritten since: only drop the version that expired.
            if keys is not None and entry is not None and entry.expires_at == expires_at:
                del keys[key]
                if not keys:
                    del self._data[namespace]

    def _live(self, namespace: str, key: str) -> _Entry | None:
        self._sweep(self._clock())
        keys = self._data.get(namespace)
        return keys.get(key) if keys else None

    def _expires_at(self, ttl: float | None) -> float | None:
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise StateError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if not math.isfinite(ttl):  # as Redis refuses it
            raise StateError(f"ttl must be a finite number of seconds or None, got {ttl!r}")
        return self._clock() + ttl

    def _store(self, namespace: str, key: str, entry: _Entry, *, schedule: bool = True) -> None:
        self._data.setdefault(namespace, {})[key] = entry
        if schedule and entry.expires_at is not None:
            heapq.heappush(self._expiry, (entry.expires_at, namespace, key))
            if len(self._expiry) > self._compact_at:
                self._compact()

    def _compact(self) -> None:
        """Drop heap items of keys overwritten since (a key re-set with a TTL on every request)."""
        live = [
            (entry.expires_at, namespace, key)
            for namespace, keys in self._data.items()
            for key, entry in keys.items()
            if entry.expires_at is not None
        ]
        heapq.heapify(live)
        self._expiry = live
        self._compact_at = max(_COMPACT_AT, 2 * len(live))  # amortized: O(1) per set

    # -- the API ---------------------------------------------------------------------

    async def get(self, namespace: str, key: str, default: Any = None) -> Any:
        entry = self._live(namespace, key)
        return default if entry is None else _decoder.decode(entry.value)

    async def set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        encoded = encode(namespace, key, value)
        expires_at = self._expires_at(ttl)
        self._sweep(self._clock())
        self._store(namespace, key, _Entry(encoded, expires_at))

    async def delete(self, namespace: str, key: str) -> bool:
        entry = self._live(namespace, key)
        if entry is None:
            return False
        keys = self._data[namespace]
        del keys[key]
        if not keys:
            del self._data[namespace]
        return True

    async def incr(self, namespace: str, key: str, by: int = 1) -> int:
        # No await between read and write: atomic on the event loop.
        if isinstance(by, bool) or not isinstance(by, int):
            raise StateError(f"incr takes an integer step, got {by!r}")
        entry = self._live(namespace, key)
        if entry is None:
            value, expires_at = by, None
        else:
            current = _decoder.decode(entry.value)
            if isinstance(current, bool) or not isinstance(current, int):
                raise StateError(
                    f"cannot incr {namespace!r}/{key!r}: it holds {type(current).__name__}, "
                    "not an integer"
                )
            value, expires_at = current + by, entry.expires_at  # incr keeps the key's TTL
        if not _INT64_MIN <= value <= _INT64_MAX:  # what Redis refuses too
            raise StateError(
                f"cannot incr {namespace!r}/{key!r}: the result would overflow a 64-bit integer"
            )
        entry = _Entry(_encoder.encode(value), expires_at)
        self._store(namespace, key, entry, schedule=False)  # same expiry: already scheduled
        return value

    async def claim(self, namespace: str, key: str, ttl: float, holder: str | None = None) -> bool:
        # No await between read and write: atomic on the event loop.
        mine = _encoder.encode(True if holder is None else holder)
        expires_at = self._expires_at(ttl)
        entry = self._live(namespace, key)
        if entry is not None and (holder is None or entry.value != mine):
            return False
        self._store(namespace, key, _Entry(mine, expires_at))
        return True

    async def release(self, namespace: str, key: str, holder: str) -> bool:
        entry = self._live(namespace, key)
        if entry is None or entry.value != _encoder.encode(holder):
            return False
        return await self.delete(namespace, key)

    async def keys(self, namespace: str) -> list[str]:
        self._sweep(self._clock())
        return sorted(self._data.get(namespace, ()))
