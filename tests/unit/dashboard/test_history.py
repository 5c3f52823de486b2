"""The rate history behind the dashboard's charts, and the chart drawn from it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from rmqkit.client.admin import AdminClient, BrokerSummary
from rmqkit.dashboard.cluster import CHART_H, CHART_W, ClusterPages
from rmqkit.dashboard.history import RateHistory


class FakeAdmin:
    def __init__(self) -> None:
        self.answer: list[BrokerSummary] = []

    async def brokers(self) -> list[BrokerSummary]:
        return self.answer


def summary(addr: str, in_tps: float | None, out_tps: float | None) -> BrokerSummary:
    return BrokerSummary("C", "b", 0, addr, in_tps=in_tps, out_tps=out_tps)


async def test_each_round_adds_a_point_per_answering_broker_and_forgets_departed_ones() -> None:
    admin = FakeAdmin()
    history = RateHistory(cast(AdminClient, admin), points=3)
    admin.answer = [summary("a:1", 10.0, 5.0), summary("b:1", None, None)]  # b did not answer
    for _ in range(4):
        await history.sample()
    assert list(history.series) == ["a:1"] and len(history.series["a:1"]) == 3  # the last 3
    assert (history.series["a:1"][-1].in_tps, history.series["a:1"][-1].out_tps) == (10.0, 5.0)
    admin.answer = [summary("b:1", 1.0, 0.0)]  # a left the cluster
    await history.sample()
    assert list(history.series) == ["b:1"]


async def test_the_chart_spans_the_width_and_scales_to_the_peak() -> None:
    admin = FakeAdmin()
    history = RateHistory(cast(AdminClient, admin))
    dash: Any = SimpleNamespace(history=history)
    pages = ClusterPages(dash)
    admin.answer = [summary("a:1", 0.0, 0.0)]
    await history.sample()
    assert pages.chart("a:1") is None  # one point is no line
    admin.answer = [summary("a:1", 100.0, 50.0)]
    await history.sample()
    chart = pages.chart("a:1")
    assert chart is not None and chart["top"] == 100.0
    bottom, top = f"{CHART_H - 1:.1f}", f"{1:.1f}"
    assert chart["in"] == f"0.0,{bottom} {CHART_W:.1f},{top}"
    assert chart["out"] == f"0.0,{bottom} {CHART_W:.1f},{(CHART_H - 1) - 0.5 * (CHART_H - 2):.1f}"
    assert pages.chart("nobody:1") is None
