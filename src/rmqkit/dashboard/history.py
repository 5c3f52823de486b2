"""A short history of every broker's rates, for the dashboard's charts.

Brokers report their rates over the last 10 s, 60 s and 600 s, not a series, so the dashboard
asks them every `interval_s` and keeps the last `points` answers per broker (ten minutes at the
default five seconds). A broker that does not answer gets no point; one that left the cluster
is dropped at the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

from rmqkit.client.admin import AdminClient
from rmqkit.errors import RmqkitError
from rmqkit.protocol.route import BodyError

log = logging.getLogger("rmqkit.dashboard")


@dataclass(frozen=True, slots=True)
class RatePoint:
    at_ms: int
    in_tps: float
    out_tps: float


class RateHistory:
    """Per broker address, the last `points` (time, messages in/s, messages out/s)."""

    def __init__(self, admin: AdminClient, interval_s: float = 5.0, points: int = 120) -> None:
        self.admin = admin
        self.interval_s = interval_s
        self.points = points
        self.series: dict[str, deque[RatePoint]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rate-history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sample(self) -> None:
        """Ask every broker once and add a point for each that answered."""
        now = int(time.time() * 1000)
        brokers = await self.admin.brokers()
        seen = set()
        for b in brokers:
            seen.add(b.addr)
            if b.in_tps is None or b.out_tps is None:
                continue
            series = self.series.setdefault(b.addr, deque(maxlen=self.points))
            series.append(RatePoint(now, b.in_tps, b.out_tps))
        for addr in set(self.series) - seen:
            del self.series[addr]

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except (RmqkitError, BodyError, OSError) as exc:  # the cluster is down: no point
                log.debug("dashboard: rates not sampled: %s", exc)
            except Exception:
                log.exception("dashboard: sampling the rates failed; trying again")
            await asyncio.sleep(self.interval_s)
