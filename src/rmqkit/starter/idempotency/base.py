"""The idempotency store port: acquire / complete / release of a message key per consumer group.

RocketMQ delivers each message at least once (consumer crash before the offset commit, reconsume
later, producer retries), so its guides ask consumers to deduplicate on a business key; the
starter does that through an `IdempotencyStore` before and after each listener call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from rmqkit.errors import ConfigurationError

Clock = Callable[[], float]
"""Seconds since the epoch, as `time.time`; tests pass a fake to move time without sleeping."""

DEFAULT_CLOCK: Clock = time.time


class Claim(Enum):
    ACQUIRED = "acquired"  # nobody had it (or the previous lease expired): run the handler
    DONE = "done"  # finished before, still within retention: skip the handler, ack
    BUSY = "busy"  # another consumer holds an unexpired lease: retry later


class IdempotencyStore(Protocol):
    async def acquire(self, scope: str, key: str, *, lease_s: float) -> Claim: ...
    async def complete(self, scope: str, key: str, *, retention_s: float) -> None: ...
    async def release(self, scope: str, key: str) -> None: ...
    async def close(self) -> None: ...


# The records every store keeps, whatever its medium: a key is either leased (being processed,
# until its lease runs out) or done (remembered until its retention runs out).
PROCESSING = "processing"
DONE = "done"


def check_key(scope: str, key: str) -> None:
    """Reject empty scopes and keys: an empty key would make every message one duplicate.

    Raises:
        ConfigurationError: if `scope` or `key` is empty.
    """
    if not scope:
        raise ConfigurationError("idempotency scope must not be empty")
    if not key:
        raise ConfigurationError(f"idempotency key must not be empty (scope {scope!r})")


def check_duration(name: str, seconds: float) -> None:
    """Reject leases and retentions that are not positive (a zero lease is never held).

    Raises:
        ConfigurationError: if `seconds` is not a positive number.
    """
    if not seconds > 0:
        raise ConfigurationError(f"{name} must be positive, got {seconds!r}")
