"""An idempotency store in Redis, shared by every consumer of a group on any host.

RocketMQ users commonly deduplicate on a message key in Redis; this keeps one string per key:
`processing:<token>` while a consumer holds the lease, `done` after it completed, both with a
server-side expiry (PX), so leases and retention run on the Redis server's clock.
"""

from __future__ import annotations

import math
import secrets

import redis.asyncio as aioredis

from rmqkit.errors import StoreClosedError
from rmqkit.starter.idempotency.base import DONE, PROCESSING, Claim, check_duration, check_key

DEFAULT_PREFIX = "rmqkit:idem:"

# KEYS[1] record, ARGV[1] our lease value, ARGV[2] lease ms. SET NX PX takes a free (or expired)
# key; otherwise the current value says done or busy. One script, so nothing runs in between.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 'acquired'
end
return redis.call('GET', KEYS[1])
"""

# KEYS[1] record, ARGV[1] our lease value: delete only our own lease, never a done record or the
# lease of a consumer that took over after ours ran out.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisIdempotencyStore:
    """Idempotency records as Redis strings with expiries, through `redis.asyncio`.

    Expired records vanish on the server by themselves, so `purge_expired()` has nothing to do.
    A release only drops a lease that this store instance took (its value carries a token).

    Args:
        url: a Redis URL, `redis://host:port/db` (any URL `redis.asyncio.Redis.from_url` takes).
        prefix: put before every key, so several applications can share one database.
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._leases: dict[tuple[str, str], bytes] = {}  # (scope, key) -> our lease value
        self._closed = False

    def redis_key(self, scope: str, key: str) -> str:
        """The Redis key of a record: the scope's length first, so no two (scope, key) collide."""
        return f"{self.prefix}{len(scope)}:{scope}:{key}"

    async def acquire(self, scope: str, key: str, *, lease_s: float) -> Claim:
        """Lease `key` for `lease_s` seconds unless it is done or leased by someone else.

        Returns:
            `Claim.ACQUIRED` (run the handler), `Claim.DONE` (skip it) or `Claim.BUSY` (retry).

        Raises:
            ConfigurationError: on an empty scope or key, or a lease that is not positive.
            StoreClosedError: after `close()`.
            redis.exceptions.RedisError: when Redis cannot be reached.
        """
        self._check_open()
        check_key(scope, key)
        check_duration("lease_s", lease_s)
        value = f"{PROCESSING}:{secrets.token_hex(8)}".encode()
        found = await self._acquire(keys=[self.redis_key(scope, key)], args=[value, _ms(lease_s)])
        if found == b"acquired":
            self._leases[(scope, key)] = value
            return Claim.ACQUIRED
        return Claim.DONE if found == DONE.encode() else Claim.BUSY

    async def complete(self, scope: str, key: str, *, retention_s: float) -> None:
        """Mark `key` done for `retention_s` seconds: redeliveries within that time are skipped.

        Raises:
            ConfigurationError: on an empty scope or key, or a retention that is not positive.
            StoreClosedError: after `close()`.
            redis.exceptions.RedisError: when Redis cannot be reached.
        """
        self._check_open()
        check_key(scope, key)
        check_duration("retention_s", retention_s)
        self._leases.pop((scope, key), None)
        await self._redis.set(self.redis_key(scope, key), DONE, px=_ms(retention_s))

    async def release(self, scope: str, key: str) -> None:
        """Drop this instance's lease on `key` so that a redelivery runs the handler again.

        Does nothing when the key is done, or leased by another instance (ours ran out and it
        took over), or was never acquired here.

        Raises:
            StoreClosedError: after `close()`.
            redis.exceptions.RedisError: when Redis cannot be reached.
        """
        self._check_open()
        value = self._leases.pop((scope, key), None)
        if value is not None:
            await self._release(keys=[self.redis_key(scope, key)], args=[value])

    async def purge_expired(self) -> int:
        """Nothing to delete: Redis expires records itself (PX). Kept for the stores' symmetry.

        Returns:
            Always 0.

        Raises:
            StoreClosedError: after `close()`.
        """
        self._check_open()
        return 0

    async def close(self) -> None:
        """Close the connection pool. Closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        self._leases.clear()
        await self._redis.aclose()

    def _check_open(self) -> None:
        if self._closed:  # no URL in the message: it may hold a password
            raise StoreClosedError("redis idempotency store is closed")
