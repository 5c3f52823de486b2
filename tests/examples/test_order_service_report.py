"""The order-service example's verdict: each invariant fails when the outcome breaks it (a
double charge, a step out of order, a rolled-back order that leaked), so the end-to-end test's
green result means something. No broker needed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rmqkit.starter.observability import ConsumeCounts, MetricsSnapshot

from order_service.db import OrderRow
from order_service.models import OrderStatusChanged
from order_service.observe import LagSample, Observations
from order_service.report import FANOUT_GROUPS, Outcome, check_invariants, lag_chart
from order_service.scenario import CACHE_NODES, PRODUCTS, WALLETS


def healthy() -> Outcome:
    """A small outcome that keeps every invariant: one shipped order, one that timed out."""
    shipped = OrderRow("r-00001", "alice", "book", 2, 3_000, True, "shipped", None, 3)
    unpaid = OrderRow("r-00002", "bob", "lamp", 1, 4_200, False, "cancelled", "payment-timeout", 2)
    obs = Observations()
    for status, seq in (("created", 1), ("paid", 2), ("shipped", 3)):
        obs.record_status(OrderStatusChanged(order_id=shipped.id, status=status, seq=seq))
    for status, seq in (("created", 1), ("cancelled", 2)):
        obs.record_status(OrderStatusChanged(order_id=unpaid.id, status=status, seq=seq))
    for receiver in [*FANOUT_GROUPS, *(f"cache-invalidation@{n}:paid" for n in CACHE_NODES),
                     "inventory-service"]:  # fmt: skip
        obs.saw(receiver, shipped.id)
    obs.check_backs.append((shipped.id, "COMMIT"))
    obs.inbox_duplicates = 1
    payments = [(shipped.id, "alice", 3_000)]
    metrics = MetricsSnapshot(
        sent={},
        consumed={("payment-service", "stock"): ConsumeCounts(consumed=2, acked=1, duplicates=1)},
        lag={},
    )
    return Outcome(
        run_id="r", orders=[shipped, unpaid], payments=payments,
        stock={s: start - (2 if s == "book" else 0) for s, (_, start) in PRODUCTS.items()},
        balances={c: b - (3_000 if c == "alice" else 0) for c, b in WALLETS.items()},
        obs=obs, metrics={"payment-service": metrics}, rolled_back=["r-00003"],
        crashed=[shipped.id], retried_sends=[shipped.id], crashed_payments=[shipped.id],
        intake_rows=10, burst=10, backlog_while_down=1,
        lag_samples=[LagSample(0.0, 10, 10), LagSample(1.0, 0, 0)],
    )  # fmt: skip


def failing(o: Outcome) -> list[str]:
    return [c.name for c in check_invariants(o) if not c.ok]


def test_a_healthy_outcome_passes_every_check() -> None:
    assert failing(healthy()) == []


def _double_charge(o: Outcome) -> None:
    o.payments.append(o.payments[0])
    o.balances["alice"] -= 3_000


def _out_of_order(o: Outcome) -> None:
    o.obs.streams["r-00001"] = ["created", "shipped", "paid"]
    o.obs.out_of_order.append("r-00001: created -> shipped")


def _leak(o: Outcome) -> None:
    o.obs.saw("logistics-service", "r-00003")


def _unpaid_left_open(o: Outcome) -> None:
    o.orders[1] = OrderRow("r-00002", "bob", "lamp", 1, 4_200, False, "reserved", None, 1)


def _oversold(o: Outcome) -> None:
    o.stock["book"] -= 1


@pytest.mark.parametrize(
    ("breakage", "check"),
    [
        (_double_charge, "every shipped order was paid exactly once"),
        (_out_of_order, "each order's status stream arrived in order"),
        (_leak, "rolled-back orders were never visible"),
        (_unpaid_left_open, "every unpaid order was cancelled"),
        (_oversold, "stock never negative"),
    ],
)
def test_each_broken_invariant_is_reported(breakage: Callable[[Outcome], None],
                                           check: str) -> None:  # fmt: skip
    o = healthy()
    breakage(o)
    assert any(name.startswith(check) for name in failing(o)), failing(o)


def test_the_lag_chart_scales_bars_to_the_peak() -> None:
    samples = [LagSample(0.0, 0, 0), LagSample(1.0, 100, None), LagSample(2.0, 50, 100),
               LagSample(3.0, 0, 0)]  # fmt: skip
    rows = lag_chart(samples, width=10)[1:]  # after the header
    assert [row.split("|")[1] for row in rows] == [" " * 10, "#" * 10, "#" * 5 + " " * 5, " " * 10]
    assert rows[1].split() == ["1.0s", "|##########|", "100", "?"]
    assert rows[2].split()[-2:] == ["50", "100"]


def test_a_backlog_the_broker_still_reports_fails_the_peak_shaving_check() -> None:
    o = healthy()
    o.lag_samples[-1] = LagSample(1.0, 0, 3)
    assert any(name.startswith("peak shaving") for name in failing(o))
