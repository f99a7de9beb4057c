"""Abuse protection for log-in, token and password-reset endpoints, shared through Redis.

Every process of a deployment sees the same counters: each decision is one Lua script,
so it is atomic however many requests race, and it reads Redis' own clock, so processes
whose clocks disagree still agree on the window. Every key carries a TTL: an idle
counter disappears on its own.

- ``RateLimiter``: at most ``limit`` hits per sliding ``window_seconds`` and key.
- ``Lockout``: after ``free_failures`` failed attempts on an account, each further
  failure locks it for twice as long as the one before, up to ``max_seconds``.

Design note, for callers: never let a limit tell an attacker which accounts exist.
Apply the same limiters, in the same order, whether or not the e-mail belongs to an
account (check and record failures for unknown addresses too), and answer a refusal the
same way for both. Key account limits by the normalised e-mail (``strip().casefold()``),
never by a user id only known accounts have; and key a separate limiter by client
address (``ip_key``) so that one client spraying many accounts is stopped as well.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from redis.asyncio import Redis

_MICROS = 1_000_000

# A sorted set of the hits in the window, scored by their time in microseconds.
# ARGV: limit, window in microseconds, TTL in milliseconds.
_SLIDING_WINDOW = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  -- Unique: within one microsecond the count only grows.
  redis.call('ZADD', KEYS[1], now, clock[1] .. '.' .. clock[2] .. ':' .. used)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, limit - used - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""

# A hash {failures, locked_until (microseconds)}. ARGV: free failures, base and max lock
# in microseconds, idle TTL in milliseconds. Returns the lock in force, in microseconds.
_FAIL = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local locked_until = tonumber(redis.call('HGET', KEYS[1], 'locked_until') or '0')
local beyond = failures - tonumber(ARGV[1])
if beyond > 0 then
  local lock = math.min(tonumber(ARGV[2]) * 2 ^ math.min(beyond - 1, 60), tonumber(ARGV[3]))
  locked_until = math.max(locked_until, now + lock)
  redis.call('HSET', KEYS[1], 'locked_until', locked_until)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return math.max(locked_until - now, 0)
"""

_CHECK = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local locked_until = tonumber(redis.call('HGET', KEYS[1], 'locked_until') or '0')
return math.max(locked_until - now, 0)
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # hits still allowed in the current window
    retry_after: float  # seconds until a hit would be allowed again; 0 when allowed


class RateLimiter:
    """At most ``limit`` hits per key in any ``window_seconds`` (a sliding window log).

    Refused hits are not recorded: a client that keeps hammering is let in again as
    soon as its earlier, allowed hits leave the window. Memory is at most ``limit``
    entries per key.
    """

    def __init__(self, redis: Redis, name: str, limit: int, window_seconds: float) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_seconds > 0")
        self.name, self.limit, self.window_seconds = name, limit, window_seconds
        self._window_us = round(window_seconds * _MICROS)
        self._ttl_ms = math.ceil(window_seconds * 1000)
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._redis = redis

    def redis_key(self, key: str) -> str:
        return f"klikkflow:rl:{self.name}:{key}"

    async def hit(self, key: str) -> Decision:
        allowed, remaining, retry_us = await self._script(
            keys=[self.redis_key(key)], args=[self.limit, self._window_us, self._ttl_ms]
        )
        return Decision(bool(allowed), int(remaining), int(retry_us) / _MICROS)

    async def reset(self, key: str) -> None:
        await self._redis.delete(self.redis_key(key))


class Lockout:
    """Exponential lock-out per account key.

    The first ``free_failures`` failures cost nothing; the k-th failure beyond them locks
    the key for ``base_seconds * 2**(k-1)``, at most ``max_seconds``. A success clears
    everything; so does ``max_seconds * 2`` without any failure.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        free_failures: int = 5,
        base_seconds: float = 1,
        max_seconds: float = 900,
    ) -> None:
        if free_failures < 0 or base_seconds <= 0 or max_seconds < base_seconds:
            raise ValueError(
                "a lock-out needs free_failures >= 0 and 0 < base_seconds <= max_seconds"
            )
        self.name, self.free_failures = name, free_failures
        self.base_seconds, self.max_seconds = base_seconds, max_seconds
        self._fail_args = [
            free_failures,
            round(base_seconds * _MICROS),
            round(max_seconds * _MICROS),
            math.ceil(max_seconds * 2 * 1000),
        ]
        self._fail = redis.register_script(_FAIL)
        self._check = redis.register_script(_CHECK)
        self._redis = redis

    def redis_key(self, key: str) -> str:
        return f"klikkflow:lockout:{self.name}:{key}"

    async def check(self, key: str) -> float:
        """Seconds the key is still locked for; 0 when it is free."""
        return int(await self._check(keys=[self.redis_key(key)])) / _MICROS

    async def fail(self, key: str) -> float:
        """Record a failed attempt; return the lock now in force, in seconds."""
        return int(await self._fail(keys=[self.redis_key(key)], args=self._fail_args)) / _MICROS

    async def succeed(self, key: str) -> None:
        await self._redis.delete(self.redis_key(key))


def ip_key(address: str) -> str:
    """The key for a client address: IPv6 clients by /64, as one host usually owns one."""
    ip = ipaddress.ip_address(address)
    if not isinstance(ip, ipaddress.IPv6Address):
        return str(ip)
    if ip.ipv4_mapped is not None:  # ::ffff:203.0.113.7 is that IPv4 client
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))
