"""One `async with` shape for every runnable part: entering starts it, leaving stops it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncLifecycle:
    """Gives a class with `async start()` and `async stop()` the `async with` protocol."""

    async def start(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define start")

    async def stop(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define stop")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
