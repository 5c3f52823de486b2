"""The scripted demo: `python -m order_service.demo` (or `make demo`) starts an embedded
RocketMQ cluster (or uses `ROCKETMQ_NAME_SERVER`), runs every service, and walks through
transactional order creation, the order flow, a logistics outage, fan-out, a flash-sale burst;
then it checks the business invariants and exits 0 only if all hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from rmqkit.starter import EmbeddedCluster, RocketSettings

from order_service import db
from order_service.app import Shop
from order_service.db import Database, OrderRow
from order_service.flows import Placed, order_id, place_order
from order_service.listeners import ServiceContext
from order_service.models import LIFECYCLE, ORDER_REQUESTED, REQUEST_TOPIC, OrderRequested
from order_service.observe import LagSample, Observations
from order_service.report import FANOUT_GROUPS, Outcome, check_invariants, print_summary
from order_service.scenario import (
    CACHE_NODES,
    DELAY_LEVELS_S,
    DISCONTINUED,
    PRODUCTS,
    WALLETS,
    Chaos,
    DemoConfig,
    OrderPlan,
    plan_orders,
)

BURST_BATCH = 250  # requests per send_batch call
BURST_IN_FLIGHT = 4  # batch sends under way at once


class Demo:
    """The demo's steps against a running `Shop`."""

    def __init__(self, shop: Shop, run_id: str, out: TextIO) -> None:
        self.shop = shop
        self.cfg = shop.ctx.cfg
        self.db = shop.ctx.db
        self.obs = shop.ctx.obs
        self.run_id = run_id
        self.out = out
        self.rolled_back: list[str] = []
        self.crashed: list[str] = []
        self.backlog_while_down = 0
        self.lag_samples: list[LagSample] = []
        self.timings: dict[str, float] = {}

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def rows(self) -> list[OrderRow]:
        return db.orders(self.db, self.run_id + "-")

    async def wait(self, what: str, condition: Callable[[], bool], timeout_s: float | None = None
                   ) -> float:  # fmt: skip
        """Poll until `condition()` holds; returns the seconds it took. On a timeout it says so
        and returns -1 (the invariants at the end then fail)."""
        start = time.perf_counter()
        deadline = start + (timeout_s or self.cfg.settle_timeout_s)
        while not condition():
            if time.perf_counter() > deadline:
                self.say(f"   !! gave up waiting for {what}")
                return -1.0
            await asyncio.sleep(0.05)
        return time.perf_counter() - start

    async def place(self, plans: Sequence[OrderPlan]) -> list[Placed]:
        return [await place_order(self.shop.create_order, p, self.run_id) for p in plans]

    # -- 1. transactions and the order flow -------------------------------------------------------

    async def order_flow(self) -> None:
        cfg = self.cfg
        self.say("1. Orders: the order row and order:created commit together (transactional)")
        plans = plan_orders(cfg, 1, cfg.orders, prints=cfg.signed_prints)
        rollback = OrderPlan(cfg.orders + 1, "alice", DISCONTINUED[0], 1, auto_pay=True)
        crash = OrderPlan(cfg.orders + 2, "bob", "book", 1, auto_pay=True)
        crash_id = order_id(self.run_id, crash.number)
        self.shop.create_order.crash_before_broker_commit.add(crash_id)
        start = time.perf_counter()
        placed = await self.place([*plans, rollback, crash])
        took = time.perf_counter() - start
        states = Counter(p.state for p in placed)
        self.rolled_back = [p.order_id for p in placed if p.state == "ROLLBACK"]
        self.crashed = [p.order_id for p in placed if p.state == "CRASHED"]
        self.say(
            f"   {len(placed)} orders placed in {took:.2f} s: {states['COMMIT']} committed,"
            f" {states['ROLLBACK']} rolled back, {states['CRASHED']} crashed mid-commit"
        )
        for oid, why in self.obs.rolled_back:
            self.say(f"   rolled back {oid}: local transaction failed ({why}); no row, no event")
        self.say(f"   crashed {crash_id}: row committed, broker commit never sent -> "
                 "the broker will check back")  # fmt: skip
        took = await self.wait("the check-back", lambda: (crash_id, "COMMIT") in
                               self.obs.check_backs and self.obs.received(
                                   "inventory-service", [crash_id]))  # fmt: skip
        self.timings["check_back_s"] = took
        self.say(f"   check-back answered COMMIT from the transaction log after {took:.1f} s; "
                 "the order went out")  # fmt: skip
        wave = {order_id(self.run_id, p.number) for p in [*plans, crash]}

        def settled() -> bool:
            return all(r.status in ("shipped", "cancelled") or
                       (r.status == "reserved" and not r.auto_pay)
                       for r in self.rows() if r.id in wave)  # fmt: skip

        await self.wait("the first wave", settled)
        took = time.perf_counter() - start
        rows = [r for r in self.rows() if r.id in wave]
        count = Counter(r.reason or r.status for r in rows)
        self.say(f"   inventory -> payment -> logistics, each its own consumer group: "
                 f"{took:.1f} s after the first order, {count['shipped']} shipped, "
                 f"{count['out-of-stock']} cancelled "
                 f"(out of stock: {PRODUCTS['signed-print'][1]} signed prints for "
                 f"{cfg.signed_prints} orders), {count['reserved']} wait for a payment that "
                 f"will not come (cancelled after {cfg.payment_timeout_s:g} s by a delayed "
                 "message)")  # fmt: skip

    # -- 2. decoupling ----------------------------------------------------------------------------

    async def logistics_outage(self) -> None:
        cfg = self.cfg
        self.say()
        self.say("2. Decoupling: logistics-service goes down; orders keep coming")
        await self.shop.stop_service("logistics-service")
        plans = plan_orders(cfg, cfg.orders + 3, cfg.orders_while_down)
        start = time.perf_counter()
        placed = await self.place(plans)
        took = time.perf_counter() - start
        wave = {p.order_id for p in placed}
        await self.wait("payments during the outage", lambda: all(
            r.status in ("paid", "cancelled") or not r.auto_pay
            for r in self.rows() if r.id in wave))  # fmt: skip
        self.backlog_while_down = sum(1 for r in self.rows() if r.status == "paid")
        self.say(f"   {len(placed)} orders created in {took:.2f} s with logistics down; "
                 f"{self.backlog_while_down} are paid and waiting: their order:paid events wait "
                 "in the broker for the logistics-service group")  # fmt: skip
        await self.shop.start_service("logistics-service")
        took = await self.wait(
            "logistics to catch up", lambda: not any(r.status == "paid" for r in self.rows())
        )
        self.timings["catch_up_s"] = took
        self.say(f"   logistics-service restarted: caught up, {self.backlog_while_down} shipped "
                 f"in {took:.1f} s")  # fmt: skip

    # -- 3. peak shaving --------------------------------------------------------------------------

    async def flash_sale(self) -> None:
        cfg, meter = self.cfg, self.shop.meter
        self.say()
        self.say(f"3. Peak shaving: a flash sale sends {cfg.burst:,} orders at once; the intake "
                 f"writes them at {cfg.rate:,.0f}/s")  # fmt: skip
        intake = self.shop.apps["order-intake"]
        template = self.shop.apps["order-service"].template
        customers = sorted(WALLETS)
        requests = [
            OrderRequested(request_id=f"{self.run_id}-flash-{i:06d}",
                           customer=customers[i % len(customers)], sku="book")
            for i in range(cfg.burst)
        ]  # fmt: skip
        interval = max(0.1, cfg.burst / cfg.rate / 24)
        start = time.perf_counter()

        async def broker_lag() -> int | None:
            try:
                lag = await intake.consumer_lag("order-intake")
            except Exception:  # the admin query failed: show a gap, not a number
                return None
            return lag.get(("order-intake", REQUEST_TOPIC))

        async def sample() -> None:
            while True:
                broker = await broker_lag()
                at = time.perf_counter() - start
                self.lag_samples.append(LagSample(at, meter.lag, broker))
                await asyncio.sleep(interval)

        gate = asyncio.Semaphore(BURST_IN_FLIGHT)

        async def send(chunk: list[OrderRequested]) -> None:
            async with gate:
                await template.send_batch(ORDER_REQUESTED, chunk)
            meter.sent += len(chunk)

        sampler = asyncio.create_task(sample())
        try:
            await asyncio.gather(*(send(requests[i : i + BURST_BATCH])
                                   for i in range(0, len(requests), BURST_BATCH)))  # fmt: skip
            sent_s = time.perf_counter() - start
            self.say(
                f"   {cfg.burst:,} accepted in {sent_s:.2f} s "
                f"({cfg.burst / sent_s:,.0f}/s): the producer's pace, not the database's"
            )
            drained = await self.wait("the intake to drain", lambda: meter.processed >= cfg.burst,
                                      timeout_s=cfg.burst / cfg.rate * 3 + 30)  # fmt: skip
            drain_s = time.perf_counter() - start
            self.say(f"   backlog drained in {drain_s:.1f} s ({meter.written:,} written, "
                     f"{meter.written / drain_s:,.0f}/s on average)")  # fmt: skip
            # The broker learns of the progress when the consumer commits its offsets.
            seen = await self.wait(
                "the broker to report the backlog gone",
                lambda: self.lag_samples[-1].broker == 0,
                timeout_s=30,
            )
            if seen >= 0:
                self.timings["broker_drain_s"] = time.perf_counter() - start
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        self.lag_samples.append(LagSample(time.perf_counter() - start, meter.lag,
                                          await broker_lag()))  # fmt: skip
        self.timings.update(burst_send_s=sent_s, drain_s=drain_s if drained >= 0 else -1.0)

    # -- 4. the end state -------------------------------------------------------------------------

    async def settle(self) -> None:
        """Wait for the last timeouts, fan-out deliveries and status steps."""
        chaos = self.shop.ctx.chaos

        def done() -> bool:
            rows = self.rows()
            paid = [r.id for r in rows if r.status == "shipped"]
            receivers = [*FANOUT_GROUPS, *(f"cache-invalidation@{n}:paid" for n in CACHE_NODES)]
            dups = self.shop.metrics["payment-service"].snapshot().consumed
            key_dups = sum(c.duplicates for c in dups.values())
            return (all(r.status in ("shipped", "cancelled") for r in rows)
                    and all(tuple(self.obs.streams.get(r.id, ())) == LIFECYCLE[r.status]
                            for r in rows)
                    and all(self.obs.received(r, paid) for r in receivers)
                    and key_dups >= len(chaos.retried_sends)
                    and self.obs.inbox_duplicates >= len(chaos.crashed_payments))  # fmt: skip

        self.say()
        self.say("4. Fan-out, idempotency, ordered and delayed events")
        await self.wait("the last events", done)
        rows = self.rows()
        paid = {r.id for r in rows if r.status == "shipped"}
        receivers = {g.removesuffix("-service"): g for g in FANOUT_GROUPS} | {
            n: f"cache-invalidation@{n}:paid" for n in CACHE_NODES
        }
        reached = ", ".join(
            f"{label} {len(paid & set(self.obs.seen.get(key, ())))}"
            for label, key in receivers.items()
        )
        self.say(f"   order:paid of {len(paid)} orders reached {reached}")
        snap = self.shop.metrics["payment-service"].snapshot().consumed
        self.say(
            f"   payments: {sum(c.duplicates for c in snap.values())} repeated sends skipped by "
            f"the idempotency key store, {self.obs.inbox_duplicates} redeliveries after a crash "
            "found in the payment inbox; no wallet was charged twice"
        )
        unpaid = sum(1 for r in rows if r.reason == "payment-timeout")
        self.say(
            f"   {len(self.obs.streams)} status streams, {len(self.obs.out_of_order)} steps out of "
            f"order; {unpaid} unpaid orders cancelled by their delayed payment-due message"
        )

    def outcome(self) -> Outcome:
        q = self.db
        chaos = self.shop.ctx.chaos
        return Outcome(
            run_id=self.run_id,
            orders=self.rows(),
            payments=[(r[0], r[1], r[2]) for r in db.query(q, "SELECT order_id, customer,"
                      " amount_cents FROM payments WHERE order_id LIKE ?", [self.run_id + "-%"])],
            stock=dict(db.query(q, "SELECT sku, stock FROM products")),
            balances=dict(db.query(q, "SELECT customer, balance_cents FROM accounts")),
            obs=self.obs,
            metrics={name: m.snapshot() for name, m in self.shop.metrics.items()},
            rolled_back=self.rolled_back,
            crashed=self.crashed,
            retried_sends=list(chaos.retried_sends),
            crashed_payments=list(chaos.crashed_payments),
            intake_rows=db.query(q, "SELECT COUNT(*) FROM intake WHERE request_id LIKE ?",
                                 [self.run_id + "-%"])[0][0],
            burst=self.cfg.burst,
            backlog_while_down=self.backlog_while_down,
            lag_samples=self.lag_samples,
            timings=self.timings,
        )  # fmt: skip


async def run_demo(cfg: DemoConfig, out: TextIO | None = None) -> Outcome:
    """Run the whole demo and return what happened, with the invariants checked."""
    out = out or sys.stdout
    run_id = secrets.token_hex(3)
    started = time.perf_counter()
    with contextlib.ExitStack() as files:
        base = cfg.data_dir or Path(files.enter_context(
            tempfile.TemporaryDirectory(prefix="order-demo-")))  # fmt: skip
        work = base / f"run-{run_id}"
        work.mkdir(parents=True)
        database = Database(work / "orders.db")
        database.create(PRODUCTS, WALLETS)
        ctx = ServiceContext(database, Observations(), Chaos(cfg), cfg)
        async with contextlib.AsyncExitStack() as stack:
            name_server = cfg.name_server
            where = f"RocketMQ at {name_server}"
            if name_server is None:
                cluster = EmbeddedCluster(work / "broker", transaction_check_interval_ms=1_000,
                                          transaction_timeout_ms=1_000)  # fmt: skip
                await stack.enter_async_context(cluster)
                name_server = cluster.name_server
                where = f"an embedded NameServer + broker at {name_server}"
            print(f"rmqkit order-service demo, run {run_id}, on {where}", file=out)
            shop = Shop(ctx, name_server, work)
            await stack.enter_async_context(shop)
            print(f"   services up: {', '.join(shop.running())}\n", file=out, flush=True)
            demo = Demo(shop, run_id, out)
            await demo.order_flow()
            await demo.logistics_outage()
            await demo.flash_sale()
            await demo.settle()
            outcome = demo.outcome()
        outcome.timings["total_s"] = time.perf_counter() - started
        outcome.checks = check_invariants(outcome)
        print_summary(outcome, cfg, out)
    return outcome


def parse_args(argv: Sequence[str] | None) -> tuple[DemoConfig, bool]:
    p = argparse.ArgumentParser(prog="python -m order_service.demo", description=__doc__)
    p.add_argument("--orders", type=int, help="orders in the first wave (ORDER_DEMO_ORDERS)")
    p.add_argument(
        "--orders-while-down",
        type=int,
        help="orders created while logistics is down (ORDER_DEMO_ORDERS_WHILE_DOWN)",
    )
    p.add_argument("--burst", type=int, help="flash-sale requests (ORDER_DEMO_BURST)")
    p.add_argument("--rate", type=float, help="intake writes per second (ORDER_DEMO_RATE)")
    p.add_argument(
        "--payment-timeout",
        type=float,
        dest="payment_timeout_s",
        choices=DELAY_LEVELS_S,
        help="seconds (ORDER_DEMO_PAYMENT_TIMEOUT_S)",
    )
    p.add_argument("--data-dir", type=Path, help="keep the database and broker store here")
    p.add_argument("-v", "--verbose", action="store_true", help="show rmqkit's own log")
    args = vars(p.parse_args(argv))
    verbose = args.pop("verbose")
    # ROCKETMQ_NAME_SERVER (or a .env file) points the demo at a running cluster.
    name_server = RocketSettings().name_server
    return DemoConfig.from_env(name_server=name_server, **args), verbose


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every invariant held."""
    cfg, verbose = parse_args(argv)
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    outcome = asyncio.run(run_demo(cfg))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
