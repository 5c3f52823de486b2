"""The broker's counts and rates: RocketMQ's `putTps` windows and the midnight totals."""

from __future__ import annotations

from datetime import date

import pytest

from rmqkit.server.broker.stats import BrokerStats, StatsSampler
from rmqkit.testing import check_for

DAY = date(2026, 11, 21)


def test_rates_are_taken_over_each_window_from_the_sample_that_far_back() -> None:
    s = BrokerStats()
    assert s.rates(10, 0.0) == (0.0, 0.0)
    for t in range(0, 601):  # 2 messages put and 1 got a second for 600 s ...
        s.sample(float(t), DAY)
        s.put(2)
        s.get(1)
    s.put(1000)  # ... then a burst in the last second
    now = 600.5
    assert s.rates(10, now) == pytest.approx(((2 * 10 + 1002) / 10.5, 11 / 10.5))
    assert s.rates(60, now) == pytest.approx(((2 * 60 + 1002) / 60.5, 61 / 60.5))
    info = s.runtime_info(now)
    assert info["putTps"].split() == [f"{(2 * w + 1002) / (w + 0.5):.2f}" for w in (10, 60, 600)]
    assert info["getTransferedTps"].split()[2] == f"{601 / 600.5:.2f}"
    assert info["msgPutTotalTodayNow"] == str(2 * 601 + 1000)


def test_a_young_broker_rates_since_its_first_sample() -> None:
    s = BrokerStats()
    s.sample(100.0, DAY)
    s.put(30)
    assert s.rates(600, 103.0) == (10.0, 0.0)
    assert s.rates(10, 100.0) == (0.0, 0.0)  # no time has passed: no rate, no division


def test_the_samples_keep_ten_minutes() -> None:
    s = BrokerStats()
    for t in range(2000):
        s.sample(float(t), DAY)
    assert len(s.samples) == 601 and s.samples[0].at == 1399.0


def test_midnight_moves_the_day_totals_along() -> None:
    s = BrokerStats()
    s.sample(0.0, DAY)
    s.put(5)
    s.get(2)
    s.sample(1.0, DAY)
    info = s.runtime_info(1.0)
    assert (info["msgPutTotalTodayMorning"], info["msgPutTotalYesterdayMorning"]) == ("0", "0")
    s.sample(2.0, date(2026, 11, 22))  # midnight passed: 5 and 2 were yesterday's
    s.put(7)
    s.sample(3.0, date(2026, 11, 23))  # and again: 7 were yesterday's
    info = s.runtime_info(3.0)
    assert (info["msgPutTotalYesterdayMorning"], info["msgPutTotalTodayMorning"]) == ("5", "12")
    assert (info["msgGetTotalYesterdayMorning"], info["msgGetTotalTodayMorning"]) == ("2", "2")
    s.put(1)
    s.sample(4.0, date(2026, 11, 26))  # days unsampled: nothing is known of yesterday
    info = s.runtime_info(4.0)
    assert info["msgPutTotalYesterdayMorning"] == info["msgPutTotalTodayMorning"] == "13"


async def test_the_sampler_samples_until_stopped() -> None:
    s = BrokerStats()
    sampler = StatsSampler(s, interval_s=0.01)
    await sampler.start()
    await check_for(lambda: len(s.samples) >= 3, timeout=5)
    await sampler.stop()
    taken = len(s.samples)
    assert not sampler.running and taken == len(s.samples)
