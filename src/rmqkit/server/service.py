"""One base for the broker's background loops (RocketMQ's `ServiceThread`, on asyncio).

A `Service` runs `_run_once()` every `interval`, or sooner when `wakeup()` is called; a failing
iteration is logged and the loop goes on. `stop()` wakes the loop, lets the current iteration
finish, then runs `_on_stop()` once (a last flush, for instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from rmqkit.common.lifecycle import AsyncLifecycle

log = logging.getLogger("rmqkit.service")


class Service(AsyncLifecycle):
    """A named background loop with `start`, `stop`, and a wait that `wakeup` cuts short."""

    name: str = "service"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)
        log.debug("%s started", self.name)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._on_stop()
        log.debug("%s stopped", self.name)

    def wakeup(self) -> None:
        """Run the next iteration now instead of at the end of the interval."""
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: iteration failed; continuing", self.name)
            if self._stopping:
                break
            await self._wait(self.interval_s)

    async def _wait(self, interval_s: float) -> None:
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
        self._wake.clear()

    async def _run_once(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _run_once")

    async def _on_stop(self) -> None:
        """Runs once after the loop has ended; the default does nothing."""
