"""The order-service example end to end against an embedded cluster (NameServer + broker on
127.0.0.1, port 0, data in tmp_path), with small counts: the business outcome, checked from the
database and from what the listeners received, not only from the demo's own verdict."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import pytest

from order_service import db
from order_service.db import Database
from order_service.demo import run_demo
from order_service.models import LIFECYCLE
from order_service.scenario import PRODUCTS, DemoConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def no_cluster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROCKETMQ_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_cluster_env")
async def test_the_order_service_keeps_its_business_invariants(tmp_path: Path) -> None:
    cfg = DemoConfig(orders=24, orders_while_down=8, burst=500, rate=1_000.0, data_dir=tmp_path)
    out = io.StringIO()
    o = await run_demo(cfg, out)
    report = out.getvalue()
    assert [c.name for c in o.checks if not c.ok] == [], report

    database = Database(tmp_path / f"run-{o.run_id}" / "orders.db")
    rows = {r.id: r for r in db.orders(database, o.run_id + "-")}
    charges = Counter(oid for (oid,) in db.query(database, "SELECT order_id FROM payments"))
    # 24 + 8 orders plus the crashed one; the rolled-back one has no row.
    assert len(rows) == cfg.orders + cfg.orders_while_down + 1, report
    # Every order that was not cancelled was paid exactly once; no cancelled order was charged.
    assert {r.status for r in rows.values()} <= {"shipped", "cancelled"}, report
    assert all(charges[i] == (1 if r.status == "shipped" else 0) for i, r in rows.items())
    # Stock never went negative: the limited edition sold exactly its three prints.
    stock = dict(db.query(database, "SELECT sku, stock FROM products"))
    prints_sold = sum(r.qty for r in rows.values()
                      if r.sku == "signed-print" and r.status == "shipped")  # fmt: skip
    assert min(stock.values()) >= 0 and stock["signed-print"] + prints_sold == PRODUCTS[
        "signed-print"][1]  # fmt: skip
    assert sum(1 for r in rows.values() if r.reason == "out-of-stock") == cfg.signed_prints - 3
    # Every order's status steps arrived in order at the ORDERLY tracker.
    assert {i: tuple(o.obs.streams[i]) for i in rows} == {
        i: LIFECYCLE[r.status] for i, r in rows.items()}  # fmt: skip
    # Every unpaid order was cancelled by its delayed payment-timeout message.
    unpaid = [r for r in rows.values() if not r.auto_pay]
    assert unpaid and all(r.reason == "payment-timeout" for r in unpaid)
    # The rolled-back order was never visible; the crashed one was committed by check-back.
    assert len(o.rolled_back) == 1 and o.rolled_back[0] not in rows
    assert not [who for who, got in o.obs.seen.items() if o.rolled_back[0] in got]
    (crashed,) = o.crashed
    assert rows[crashed].status == "shipped" and (crashed, "COMMIT") in o.obs.check_backs
    # Duplicates were forced both ways and absorbed; the wallets moved once per order.
    assert o.key_store_duplicates >= len(o.retried_sends) > 0
    assert o.obs.inbox_duplicates >= len(o.crashed_payments) > 0
    # The flash sale was written exactly once, and the lag came back to zero.
    assert o.intake_rows == cfg.burst
    assert max(s.counted for s in o.lag_samples) > 0
    assert (o.lag_samples[-1].counted, o.lag_samples[-1].broker) == (0, 0)
    assert "all invariants hold" in report
