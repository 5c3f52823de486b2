"""Running a coroutine up to its first suspension, and resuming the rest in a task."""

from __future__ import annotations

import asyncio

import pytest

from rmqkit.remoting.eager import Suspended, start_eagerly


async def test_a_coroutine_that_never_waits_finishes_in_the_call() -> None:
    steps: list[str] = []

    async def at_once() -> int:
        steps.append("ran")
        return 42

    assert start_eagerly(at_once()) == (True, 42)
    assert steps == ["ran"]


async def test_a_coroutine_that_waits_is_resumed_in_place() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> str:
        steps.append("before")
        got = await gate
        steps.append("after")
        return got.upper()

    done, rest = start_eagerly(waits())
    assert not done and isinstance(rest, Suspended)
    assert steps == ["before"]  # the first step ran in the call, nothing more
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    gate.set_result("later")
    assert await task == "LATER"
    assert steps == ["before", "after"]


async def test_an_error_before_the_first_wait_raises_from_the_call() -> None:
    async def broken() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        start_eagerly(broken())


async def test_an_error_after_a_wait_raises_from_the_await() -> None:
    async def broken_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    done, rest = start_eagerly(broken_later())
    assert not done
    with pytest.raises(ValueError, match="later"):
        await rest  # type: ignore[misc]


async def test_cancellation_is_thrown_into_the_coroutine() -> None:
    unwound: list[str] = []

    async def long_wait() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            unwound.append("cancelled")
            raise

    done, rest = start_eagerly(long_wait())
    assert not done
    task = asyncio.ensure_future(rest)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert unwound == ["cancelled"]


async def test_a_timeout_reaches_a_resumed_coroutine() -> None:
    async def long_wait() -> None:
        await asyncio.sleep(60)

    done, rest = start_eagerly(long_wait())
    assert not done
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await rest  # type: ignore[misc]
