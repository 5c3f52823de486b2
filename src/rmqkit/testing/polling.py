"""Poll instead of sleeping: wait until a condition holds, or fail with what it last saw."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


# Two signatures so that an async predicate's result type is what `await check_for(...)` gives,
# rather than a union a type checker cannot solve.
@overload
async def check_for(
    condition: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...
@overload
async def check_for(
    condition: Callable[[], T],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...
async def check_for(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 -- a deadline is what a poller is for
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Call `condition` until it returns something truthy; return that value.

    Raises:
        AssertionError: if it is still falsy (or raising) after `timeout` seconds; the error says
            what it last returned or raised.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = value
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            what = f"{message}: " if message else ""
            raise AssertionError(f"{what}condition still false after {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)
