"""A real redis-server on 127.0.0.1 and a free port, one per test, for the Redis store's tests.

The binary is `.interop/bin/redis-server` (installed by `make interop-deps`, which `make test`
runs) or the one on PATH; when neither exists the tests fail, they are never skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rmqkit.testing.polling import check_for

if TYPE_CHECKING:  # imported in the fixture, so other tests here run without the redis package
    import redis.asyncio as aioredis

REPO = Path(__file__).resolve().parents[3]
INTEROP_REDIS = REPO / ".interop" / "bin" / "redis-server"


def redis_server_binary() -> str:
    """The redis-server to run, or a test failure that says how to install one."""
    if INTEROP_REDIS.exists():
        return str(INTEROP_REDIS)
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(
            "redis-server not found (.interop/bin/redis-server or PATH): run `make interop-deps` "
            "(tools/interop/install.sh unpacks Debian's redis-server into .interop/)"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    url: str
    client: aioredis.Redis

    async def advance(self, prefix: str, seconds: float) -> None:
        """Move time on for the keys under `prefix`: cut their expiries by `seconds`.

        Redis runs expiries on its own clock; shortening every TTL is what passing time does to
        them, without the test sleeping.
        """
        cut_ms = round(seconds * 1000)
        async for key in self.client.scan_iter(match=f"{prefix}*"):
            ttl_ms = await self.client.pttl(key)
            if ttl_ms < 0:  # -1 no expiry, -2 gone meanwhile
                continue
            if ttl_ms <= cut_ms:
                await self.client.delete(key)
            else:
                await self.client.pexpire(key, ttl_ms - cut_ms)


async def _answers_ping(client: aioredis.Redis, proc: asyncio.subprocess.Process) -> bool:
    if proc.returncode is not None:
        raise RuntimeError(f"redis-server exited with {proc.returncode}")
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        return bool(await client.ping())
    except (OSError, RedisConnectionError):
        return False


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        pytest.fail("the redis package is missing: pip install 'redis>=5.0.1'")
    binary = redis_server_binary()
    port = free_port()
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        try:
            await check_for(
                lambda: _answers_ping(client, proc), timeout=10.0, message="redis-server PING"
            )
        except (AssertionError, RuntimeError) as exc:
            pytest.fail(f"redis-server did not start: {exc}\n{log.read_text(errors='replace')}")
        yield RedisServer(f"redis://127.0.0.1:{port}/0", client)
    finally:
        await client.aclose()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
