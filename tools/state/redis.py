"""The Redis state store: the memory store's semantics, shared by every replica.

Layout under ``STATE_PREFIX`` (default ``microcore``), for namespace ``ns`` and key ``k``:

* ``<prefix>:<len(ns)>:<ns>:<k>``: the value, msgpack-encoded as in the memory store,
  with the key's TTL as the Redis expiry. The length makes every (ns, k) pair a
  distinct name, whatever characters they hold.
* ``<prefix>:keys:<len(ns)>:<ns>``: a sorted set of the namespace's keys scored by
  expiry (ms, server clock; ``+inf`` without TTL), so ``keys(ns)`` reads one namespace
  instead of scanning the database. It expires with its longest-lived member.

Each call is one round trip; writes, ``incr``, ``claim`` and ``release`` are Lua scripts,
atomic on the server (``incr`` decodes the msgpack integer, adds, and keeps the key's TTL;
``claim`` sets the key only when it is unset or, for a renewal, holds the same holder).
Expiry uses the server's clock, so replicas agree. Needs Redis 6.2 or later (``PXAT``),
one server or a primary (not Cluster). Timeouts and the pool are tuned in the URL
(``?socket_timeout=5&max_connections=64``); the defaults bound every wait to 5 s.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError

from ._backend import encode
from ._errors import StateError

__all__ = ("RedisBackend",)

_decoder = msgspec.msgpack.Decoder()

_MAX_EXACT = 2**53  # Lua numbers are doubles: counters stay exact below this
_DEFAULTS: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "max_connections": 64,
    "timeout": 5.0,  # waiting for a pooled connection
}

# The server's clock in milliseconds, for scores and PXAT.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The index lives as long as its longest-lived member; expired members are dropped.
_TIDY = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] == nil then
  redis.call('DEL', KEYS[2])
elseif last[2] == 'inf' then
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIREAT', KEYS[2], last[2])
end
"""

# KEYS: value, index. ARGV: encoded value, ttl ms ('' for none), key.
_SET = (
    _NOW
    + """
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], 'inf', ARGV[3])
else
  local at = now + tonumber(ARGV[2])
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', at)
  redis.call('ZADD', KEYS[2], at, ARGV[3])
end
"""
    + _TIDY
)

# KEYS: value, index. ARGV: key. Returns 1 when the key existed.
_DELETE = (
    _NOW
    + """
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
"""
    + _TIDY
    + "return existed\n"
)

# KEYS: value, index. ARGV: step, key.
# Returns {1, new value} or {0, the stored bytes} when they are not a msgpack integer,
# or {2, the stored bytes} when the result would not be exact.
_INCR = (
    _NOW
    + """
local raw = redis.call('GET', KEYS[1])
local value
if not raw then
  value = tonumber(ARGV[1])
  redis.call('SET', KEYS[1], cmsgpack.pack(value))
  redis.call('ZADD', KEYS[2], 'inf', ARGV[2])
else
  local b = string.byte(raw, 1)
  -- fixint, negative fixint, uint 8-64 and int 8-64: the encodings of an integer
  if not (b <= 0x7f or b >= 0xe0 or (b >= 0xcc and b <= 0xd3)) then
    return {0, raw}
  end
  value = cmsgpack.unpack(raw) + tonumber(ARGV[1])
  if math.abs(value) >= 9007199254740992 then
    return {2, raw}
  end
  redis.call('SET', KEYS[1], cmsgpack.pack(value), 'KEEPTTL')
end
"""
    + _TIDY
    + "return {1, value}\n"
)

# KEYS: value, index. ARGV: encoded holder, ttl ms, key, '1' when a holder may renew.
# Returns 1 when the key is now the caller's (set, or renewed), 0 when someone else holds it.
_CLAIM = (
    _NOW
    + """
local held = redis.call('GET', KEYS[1])
if held and (ARGV[4] == '' or held ~= ARGV[1]) then
  return 0
end
local at = now + tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', at)
redis.call('ZADD', KEYS[2], at, ARGV[3])
"""
    + _TIDY
    + "return 1\n"
)

# KEYS: value, index. ARGV: encoded holder, key. Returns 1 when the holder's key was deleted.
_RELEASE = (
    _NOW
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
"""
    + _TIDY
    + "return 1\n"
)

# KEYS: index. ARGV: value key prefix of the namespace. The live keys, unsorted;
# members whose value is gone (expired, deleted or evicted behind our back) are dropped.
_KEYS = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local live = {}
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. key) == 1 then
    live[#live + 1] = key
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
return live
"""
)


def _ttl_ms(ttl: float | None) -> str:
    if ttl is None:
        return ""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise StateError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
    if not math.isfinite(ttl):
        raise StateError(f"ttl must be a finite number of seconds or None, got {ttl!r}")
    return str(max(1, round(ttl * 1000)))


class RedisBackend:
    """State in Redis: survives restarts, shared by every process using the same URL."""

    def __init__(self, url: str, *, prefix: str = "microcore") -> None:
        self._url = url
        self._prefix = prefix
        self.description = _redact(url)
        try:
            pool = redis.BlockingConnectionPool.from_url(url, **_DEFAULTS)
        except ValueError as exc:
            raise StateError(
                f"STATE_URL {self.description!r} is not a valid Redis URL: {exc}"
            ) from exc
        self._client = redis.Redis.from_pool(pool)
        self._set = self._client.register_script(_SET)
        self._delete = self._client.register_script(_DELETE)
        self._incr = self._client.register_script(_INCR)
        self._keys = self._client.register_script(_KEYS)
        self._claim = self._client.register_script(_CLAIM)
        self._release = self._client.register_script(_RELEASE)

    # -- names -----------------------------------------------------------------------

    def _space(self, namespace: str) -> str:
        return f"{len(namespace)}:{namespace}"

    def _value_key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}:{self._space(namespace)}:{key}"

    def _index_key(self, namespace: str) -> str:
        return f"{self._prefix}:keys:{self._space(namespace)}"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Check the server answers, so a wrong URL fails at boot rather than mid-request."""
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            await self.close()
            raise StateError(
                f"cannot reach Redis at {self.description}: {exc}; check STATE_URL and that "
                "the server is running"
            ) from exc

    async def ping(self) -> None:
        await self._call("ping", "", self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, what: str, namespace: str, operation: Any) -> Any:
        try:
            return await operation
        except (RedisError, OSError) as exc:
            raise StateError(
                f"state {what} in {namespace!r} failed: Redis at {self.description} said: {exc}"
            ) from exc

    # -- the API ---------------------------------------------------------------------

    async def get(self, namespace: str, key: str, default: Any = None) -> Any:
        raw = await self._call("get", namespace, self._client.get(self._value_key(namespace, key)))
        return default if raw is None else _decoder.decode(raw)

    async def set(self, namespace: str, key: str, value: Any, ttl: float | None = None) -> None:
        encoded = encode(namespace, key, value)
        keys = [self._value_key(namespace, key), self._index_key(namespace)]
        await self._call("set", namespace, self._set(keys, [encoded, _ttl_ms(ttl), key]))

    async def delete(self, namespace: str, key: str) -> bool:
        keys = [self._value_key(namespace, key), self._index_key(namespace)]
        return bool(await self._call("delete", namespace, self._delete(keys, [key])))

    async def incr(self, namespace: str, key: str, by: int = 1) -> int:
        if isinstance(by, bool) or not isinstance(by, int):
            raise StateError(f"incr takes an integer step, got {by!r}")
        if abs(by) >= _MAX_EXACT:
            raise StateError(f"incr steps must be below 2**53 on Redis, got {by}")
        keys = [self._value_key(namespace, key), self._index_key(namespace)]
        status, result = await self._call("incr", namespace, self._incr(keys, [by, key]))
        if status == 1:
            return int(result)
        current = _decoder.decode(result)
        if status == 2:
            raise StateError(
                f"cannot incr {namespace!r}/{key!r} on Redis: {current} + {by} would reach "
                "2**53, past which Redis counts inexactly"
            )
        raise StateError(
            f"cannot incr {namespace!r}/{key!r}: it holds {type(current).__name__}, not an integer"
        )

    async def claim(self, namespace: str, key: str, ttl: float, holder: str | None = None) -> bool:
        encoded = encode(namespace, key, True if holder is None else holder)
        keys = [self._value_key(namespace, key), self._index_key(namespace)]
        args: list[bytes | str] = [encoded, _ttl_ms(ttl), key, "" if holder is None else "1"]
        return bool(await self._call("claim", namespace, self._claim(keys, args)))

    async def release(self, namespace: str, key: str, holder: str) -> bool:
        encoded = encode(namespace, key, holder)
        keys = [self._value_key(namespace, key), self._index_key(namespace)]
        return bool(await self._call("release", namespace, self._release(keys, [encoded, key])))

    async def keys(self, namespace: str) -> list[str]:
        prefix = f"{self._prefix}:{self._space(namespace)}:"
        found = await self._call(
            "keys", namespace, self._keys([self._index_key(namespace)], [prefix])
        )
        return sorted(k.decode() for k in found)


def _redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
