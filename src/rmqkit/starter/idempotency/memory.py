"""An in-process idempotency store: a dict of leased and done keys, for tests and single workers.

It mirrors what RocketMQ users do with a local dedup cache; it forgets everything on restart,
so only `SqliteIdempotencyStore` or `RedisIdempotencyStore` survive a consumer crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from rmqkit.errors import StoreClosedError
from rmqkit.starter.idempotency.base import (
    DEFAULT_CLOCK,
    DONE,
    PROCESSING,
    Claim,
    Clock,
    check_duration,
    check_key,
)


@dataclass(slots=True)
class _Record:
    state: str  # PROCESSING or DONE
    expires_at: float  # epoch seconds; the lease end for PROCESSING, the retention end for DONE


class MemoryIdempotencyStore:
    """Keeps idempotency records in a dict; every call finishes without awaiting, so it is atomic.

    Args:
        clock: epoch seconds; defaults to `time.time`.
    """

    def __init__(self, *, clock: Clock = DEFAULT_CLOCK) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._closed = False

    def __len__(self) -> int:
        """The number of records held, expired ones included until they are purged."""
        return len(self._records)

    async def acquire(self, scope: str, key: str, *, lease_s: float) -> Claim:
        """Lease `key` for `lease_s` seconds unless it is done or leased by someone else.

        Returns:
            `Claim.ACQUIRED` (run the handler), `Claim.DONE` (skip it) or `Claim.BUSY` (retry).

        Raises:
            ConfigurationError: on an empty scope or key, or a lease that is not positive.
            StoreClosedError: after `close()`.
        """
        self._check_open()
        check_key(scope, key)
        check_duration("lease_s", lease_s)
        now = self._clock()
        record = self._records.get((scope, key))
        if record is not None and record.expires_at > now:
            return Claim.DONE if record.state == DONE else Claim.BUSY
        # Absent, or expired (a lease whose holder crashed, a done record past retention).
        self._records[(scope, key)] = _Record(PROCESSING, now + lease_s)
        return Claim.ACQUIRED

    async def complete(self, scope: str, key: str, *, retention_s: float) -> None:
        """Mark `key` done for `retention_s` seconds: redeliveries within that time are skipped.

        Raises:
            ConfigurationError: on an empty scope or key, or a retention that is not positive.
            StoreClosedError: after `close()`.
        """
        self._check_open()
        check_key(scope, key)
        check_duration("retention_s", retention_s)
        self._records[(scope, key)] = _Record(DONE, self._clock() + retention_s)

    async def release(self, scope: str, key: str) -> None:
        """Drop the lease on `key` so that a redelivery runs the handler again.

        A done record is kept: releasing after a completion must not reopen the key.

        Raises:
            StoreClosedError: after `close()`.
        """
        self._check_open()
        record = self._records.get((scope, key))
        if record is not None and record.state == PROCESSING:
            del self._records[(scope, key)]

    async def purge_expired(self) -> int:
        """Delete every record whose lease or retention has run out.

        Returns:
            How many records were deleted.

        Raises:
            StoreClosedError: after `close()`.
        """
        self._check_open()
        now = self._clock()
        expired = [k for k, r in self._records.items() if r.expires_at <= now]
        for k in expired:
            del self._records[k]
        return len(expired)

    async def close(self) -> None:
        """Forget every record; later calls raise `StoreClosedError`. Closing twice is fine."""
        self._closed = True
        self._records.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("idempotency store is closed")
