"""RedisIdempotencyStore against a real redis-server: the shared contract, plus real expiry."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from rmqkit.starter.idempotency import Claim, RedisIdempotencyStore, store_from_url
from rmqkit.testing.polling import check_for
from tests.unit.starter.idempotency.contract import (
    LEASE,
    RETENTION,
    Harness,
    PurgeableStore,
    SharedStoreContract,
    StoreContract,
)

if TYPE_CHECKING:
    from .conftest import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def harness(redis_server: RedisServer) -> AsyncIterator[Harness]:
    prefix = f"test:{secrets.token_hex(4)}:"

    async def advance(seconds: float) -> None:
        await redis_server.advance(prefix, seconds)

    async def twin() -> PurgeableStore:
        return RedisIdempotencyStore(redis_server.url, prefix=prefix)

    store = RedisIdempotencyStore(redis_server.url, prefix=prefix)
    yield Harness(store, advance, twin, expires_itself=True)
    await store.close()


class TestRedisStoreContract(StoreContract):
    pass


class TestRedisSharedContract(SharedStoreContract):
    pass


async def test_records_are_strings_with_server_expiries(redis_server: RedisServer) -> None:
    store = RedisIdempotencyStore(redis_server.url)
    key = store.redis_key("group-a", "msg-1")
    assert key == "rmqkit:idem:7:group-a:msg-1"
    try:
        assert await store.acquire("group-a", "msg-1", lease_s=LEASE) is Claim.ACQUIRED
        value = await redis_server.client.get(key)
        assert value is not None and value.startswith(b"processing:")
        assert 0 < await redis_server.client.pttl(key) <= LEASE * 1000
        await store.complete("group-a", "msg-1", retention_s=RETENTION)
        assert await redis_server.client.get(key) == b"done"
        assert LEASE * 1000 < await redis_server.client.pttl(key) <= RETENTION * 1000
    finally:
        await store.close()


async def test_a_lease_really_expires_on_the_server(redis_server: RedisServer) -> None:
    store = RedisIdempotencyStore(redis_server.url)
    try:
        assert await store.acquire("g", "crashed", lease_s=0.05) is Claim.ACQUIRED

        async def reacquired() -> bool:
            return await store.acquire("g", "crashed", lease_s=60) is Claim.ACQUIRED

        await check_for(reacquired, timeout=5.0, message="the 50 ms lease never expired")
        assert await store.acquire("g", "crashed", lease_s=60) is Claim.BUSY
    finally:
        await store.close()


async def test_store_from_url_talks_to_the_server(redis_server: RedisServer) -> None:
    store = store_from_url(redis_server.url)
    try:
        assert await store.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
        await store.complete("g", "k", retention_s=RETENTION)
        assert await redis_server.client.get("rmqkit:idem:1:g:k") == b"done"
    finally:
        await store.close()
