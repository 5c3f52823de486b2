"""The broker's message counts and rates, as GET_BROKER_RUNTIME_INFO reports them.

RocketMQ's broker keeps a running total of messages put (stored from sends, delay and timer
deliveries, replies) and got (handed to consumers by pulls), samples both once a second for
ten minutes, and reports rates over the last 10 s, 60 s and 600 s (`putTps`,
`getTransferedTps`, three numbers in one string). Day totals are the running total minus its
value at the last local midnight (`msgPutTotalTodayMorning`), and yesterday's is the difference
of the two last midnights' values: `mqadmin clusterList -m` prints them that way.

The counting is two integer additions on the send and pull paths; everything else happens once
a second in `StatsSampler` or when an admin asks.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date

from rmqkit.server.service import Service

WINDOWS_S = (10, 60, 600)
"""The rate windows of `putTps` and `getTransferedTps`, in RocketMQ's order."""


@dataclass(slots=True)
class Sample:
    at: float
    """`time.monotonic()` when taken."""
    put: int
    got: int


@dataclass(slots=True)
class BrokerStats:
    """Running totals since start, the samples that turn them into rates, and the totals at
    the last two local midnights."""

    messages_put: int = 0
    messages_got: int = 0
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=WINDOWS_S[-1] + 1))
    day: date | None = None
    put_today_morning: int = 0
    got_today_morning: int = 0
    put_yesterday_morning: int = 0
    got_yesterday_morning: int = 0
    boot_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def put(self, n: int) -> None:
        self.messages_put += n

    def get(self, n: int) -> None:
        self.messages_got += n

    def sample(self, now: float, today: date) -> None:
        """Take one sample (the sampler calls this every second) and, on the first sample of a
        new day, move the midnight totals along."""
        if self.day is None:
            self.day = today  # started today: this morning's total is 0, as in RocketMQ
        elif today != self.day:
            if (today - self.day).days == 1:
                self.put_yesterday_morning = self.put_today_morning
                self.got_yesterday_morning = self.got_today_morning
            else:  # days went by unsampled (a suspended machine): yesterday is unknown
                self.put_yesterday_morning = self.messages_put
                self.got_yesterday_morning = self.messages_got
            self.put_today_morning, self.got_today_morning = self.messages_put, self.messages_got
            self.day = today
        self.samples.append(Sample(now, self.messages_put, self.messages_got))

    def rates(self, window_s: float, now: float) -> tuple[float, float]:
        """Messages put and got per second over about the last `window_s` seconds, from the
        sample closest to that far back to the totals now; (0, 0) before the first sample."""
        if not self.samples:
            return 0.0, 0.0
        start = self.samples[0]
        for s in reversed(self.samples):
            if now - s.at >= window_s:
                start = s
                break
        elapsed = now - start.at
        if elapsed <= 0:
            return 0.0, 0.0
        return (self.messages_put - start.put) / elapsed, (self.messages_got - start.got) / elapsed

    def runtime_info(self, now: float) -> dict[str, str]:
        """The runtime-info entries under RocketMQ's key names."""
        put_rates, got_rates = [], []
        for w in WINDOWS_S:
            p, g = self.rates(w, now)
            put_rates.append(f"{p:.2f}")
            got_rates.append(f"{g:.2f}")
        return {
            "putTps": " ".join(put_rates),
            "getTransferedTps": " ".join(got_rates),  # sic: RocketMQ's key
            "msgPutTotalTodayNow": str(self.messages_put),
            "msgGetTotalTodayNow": str(self.messages_got),
            "msgPutTotalTodayMorning": str(self.put_today_morning),
            "msgGetTotalTodayMorning": str(self.got_today_morning),
            "msgPutTotalYesterdayMorning": str(self.put_yesterday_morning),
            "msgGetTotalYesterdayMorning": str(self.got_yesterday_morning),
            "bootTimestamp": str(self.boot_ms),
        }


class StatsSampler(Service):
    """Samples a `BrokerStats` once a second (RocketMQ's `StoreStatsService` sampling)."""

    name = "broker-stats"

    def __init__(self, stats: BrokerStats, interval_s: float = 1.0) -> None:
        super().__init__(interval_s)
        self.stats = stats

    async def _run_once(self) -> None:
        self.stats.sample(time.monotonic(), date.today())
