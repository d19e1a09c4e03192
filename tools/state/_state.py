"""What a plugin receives as ``state``: a namespaced key-value store with TTLs and counters."""

from __future__ import annotations

from typing import Any

from ._backend import StateBackend
from ._errors import StateError

__all__ = ("State",)


def _check(namespace: object, key: object) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise StateError(f"the namespace must be a non-empty string, got {namespace!r}")
    if not isinstance(key, str):
        raise StateError(f"the key must be a string, got {key!r}")


def _check_holder(holder: object) -> None:
    if not isinstance(holder, str) or not holder:
        raise StateError(f"a holder must be a non-empty string, got {holder!r}")


class State:
    """Shared state by namespace and key; values are plain data (msgpack-able), copied in and out.

    What a plugin receives when it names ``state`` in its constructor::

        from tools.state import State

        class CartPlugin(Plugin):
            def __init__(self, state: State) -> None:
                self.state = state

    ``STATE_URL`` picks the store: this process's memory (the default) or Redis, shared
    by every replica. State is not owned by plugins: it survives their hot reloads.
    A refused call (a value that cannot be stored, a bad TTL) raises
    :class:`~tools.state.StateError`.
    """

    def __init__(self) -> None:
        self._store: StateBackend | None = None

    def _backend(self) -> StateBackend:
        if self._store is None:
            raise StateError("the state store is not open (the state tool is not set up)")
        return self._store

    async def get(self, namespace: str, key: str, default: Any = None) -> Any:
        """The value under ``namespace``/``key``, or ``default`` when unset or expired.

        >>> await self.state.get("carts", user_id, default={})
        {'items': [1, 2]}
        """
        _check(namespace, key)
        return await self._backend().get(namespace, key, default)

    async def set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl`` (seconds) it expires, else it stays until deleted.

        >>> await self.state.set("carts", user_id, {"items": [1, 2]}, ttl=3600)
        """
        _check(namespace, key)
        await self._backend().set(namespace, key, value, ttl)

    async def delete(self, namespace: str, key: str) -> bool:
        """Remove the key; whether it existed.

        >>> await self.state.delete("carts", user_id)
        True
        """
        _check(namespace, key)
        return await self._backend().delete(namespace, key)

    async def incr(self, namespace: str, key: str, by: int = 1) -> int:
        """Add ``by`` atomically (an unset key counts from 0) and return the new value.

        The key keeps its TTL, if it has one.

        >>> await self.state.incr("rate", f"{ip}:{minute}")      # atomic: 1, 2, 3 ...
        1
        """
        _check(namespace, key)
        return await self._backend().incr(namespace, key, by)

    async def claim(
        self, namespace: str, key: str, ttl: float, *, holder: str | None = None
    ) -> bool:
        """Take ``key`` for ``ttl`` seconds unless someone holds it; whether this call got it.

        Atomic on every store (``SET NX PX`` on Redis): of callers racing for one key, on
        any number of replicas, exactly one gets ``True``. The key then reads as ``holder``
        (``True`` without one) and frees itself when ``ttl`` passes, so a claimant that
        dies never holds it for good. With ``holder`` (a token naming the claimant), a
        claim by the holder of the key also succeeds and restarts its ``ttl``: a lease
        kept alive by renewal, handed back with :meth:`release`.

        >>> await self.state.claim("digest", f"sent:{day}", ttl=86400)  # once per cluster
        True
        >>> await self.state.claim("locks", "import", ttl=30, holder=token)  # renew: True
        """
        _check(namespace, key)
        if ttl is None:
            raise StateError(
                f"claim of {namespace!r}/{key!r} needs a ttl: a claim must free itself when "
                "its claimant dies"
            )
        if holder is not None:
            _check_holder(holder)
        return await self._backend().claim(namespace, key, ttl, holder)

    async def release(self, namespace: str, key: str, holder: str) -> bool:
        """Delete ``key`` if ``holder`` holds it (atomic check-and-delete); whether it did.

        A claim that expired and was taken by another holder stays theirs.

        >>> await self.state.release("locks", "import", token)
        True
        """
        _check(namespace, key)
        _check_holder(holder)
        return await self._backend().release(namespace, key, holder)

    async def keys(self, namespace: str) -> list[str]:
        """The live keys of ``namespace``, sorted.

        >>> await self.state.keys("carts")
        ['u1', 'u2']
        """
        _check(namespace, "")
        return await self._backend().keys(namespace)
