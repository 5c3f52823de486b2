"""store_from_url: memory://, sqlite:///path and redis:// pick the matching store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.starter import idempotency
from rmqkit.starter.idempotency import (
    Claim,
    MemoryIdempotencyStore,
    SqliteIdempotencyStore,
    store_from_url,
)


async def test_memory_url() -> None:
    store = store_from_url("memory://")
    assert isinstance(store, MemoryIdempotencyStore)
    assert await store.acquire("g", "k", lease_s=1) is Claim.ACQUIRED
    await store.close()


async def test_sqlite_url_with_an_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "idem.db"
    store = store_from_url(f"sqlite:///{path}")  # sqlite:////abs/path, as in SQLAlchemy
    assert isinstance(store, SqliteIdempotencyStore)
    assert store.path == path
    assert await store.acquire("g", "k", lease_s=1) is Claim.ACQUIRED
    await store.close()
    assert path.exists()


def test_sqlite_url_with_a_relative_path() -> None:
    store = store_from_url("sqlite:///data/idem.db")
    assert isinstance(store, SqliteIdempotencyStore)
    assert store.path == Path("data/idem.db")
    assert not store.path.is_absolute()
    assert not (Path(os.getcwd()) / "data" / "idem.db").exists()  # nothing opened yet


async def test_redis_url_builds_a_redis_store_without_connecting() -> None:
    store = store_from_url("redis://127.0.0.1:1/0")  # port 1: nothing listens, nothing dialled
    assert type(store).__name__ == "RedisIdempotencyStore"
    assert type(store) is idempotency.RedisIdempotencyStore
    await store.close()


@pytest.mark.parametrize("url", ["", "memory", "sqlite://", "sqlite:///", "postgres://h/db"])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        store_from_url(url)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        _ = idempotency.NoSuchStore  # type: ignore[attr-defined]
