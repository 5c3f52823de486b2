"""The demo's verdict: the business invariants checked against the database and what the
listeners saw, the text chart of the intake's lag, and the summary printed at the end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from rmqkit.starter.observability import MetricsSnapshot

from order_service.db import OrderRow
from order_service.models import LIFECYCLE
from order_service.observe import LagSample, Observations
from order_service.scenario import CACHE_NODES, PRODUCTS, WALLETS, DemoConfig

FANOUT_GROUPS = ("notification-service", "analytics-service", "loyalty-service")


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant: its statement, whether it holds, and the numbers behind it."""

    name: str
    ok: bool
    detail: str


@dataclass
class Outcome:
    """Everything a run produced, for the checks, the summary and the tests."""

    run_id: str
    orders: list[OrderRow]
    payments: list[tuple[str, str, int]]  # (order id, customer, amount)
    stock: dict[str, int]
    balances: dict[str, int]
    obs: Observations
    metrics: dict[str, MetricsSnapshot]
    rolled_back: list[str]
    crashed: list[str]
    retried_sends: list[str]
    crashed_payments: list[str]
    intake_rows: int
    burst: int
    backlog_while_down: int = 0
    lag_samples: list[LagSample] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def consumed(self, group: str) -> Counter[str]:
        """Per outcome (consumed, acked, retried, duplicates), summed over the group's topics."""
        total: Counter[str] = Counter()
        for snap in self.metrics.values():
            for (g, _topic), counts in snap.consumed.items():
                if g == group:
                    total.update(
                        {
                            "consumed": counts.consumed,
                            "acked": counts.acked,
                            "retried": counts.retried,
                            "duplicates": counts.duplicates,
                        }
                    )
        return total

    @property
    def key_store_duplicates(self) -> int:
        return self.consumed("payment-service")["duplicates"]


def check_invariants(o: Outcome) -> list[Check]:
    """The business outcome the demo promises (each is a line of its verdict)."""
    by_id = {r.id: r for r in o.orders}
    paid_count = Counter(order_id for order_id, _, _ in o.payments)
    shipped = [r for r in o.orders if r.status == "shipped"]
    cancelled = [r for r in o.orders if r.status == "cancelled"]
    paid_ids = [r.id for r in shipped]
    checks = [
        Check("every order ended shipped or cancelled",
              len(shipped) + len(cancelled) == len(o.orders),
              f"{len(shipped)} shipped, {len(cancelled)} cancelled, "
              f"{len(o.orders) - len(shipped) - len(cancelled)} still open"),
        Check("every shipped order was paid exactly once, no cancelled order was charged",
              all(paid_count[r.id] == 1 for r in shipped)
              and all(paid_count[r.id] == 0 for r in cancelled)
              and set(paid_count) <= set(by_id),
              f"{sum(paid_count.values())} payments for {len(shipped)} shipped orders"),
        Check("every wallet changed by exactly its payments and never went negative",
              all(o.balances[c] == start - sum(a for _, cu, a in o.payments if cu == c)
                  and o.balances[c] >= 0 for c, start in WALLETS.items()),
              ", ".join(f"{c} {o.balances[c] / 100:,.2f}" for c in sorted(o.balances))),
        Check("stock never negative; it went down by exactly the shipped items",
              all(o.stock[s] >= 0 and o.stock[s] == start - sum(r.qty for r in shipped
                  if r.sku == s) for s, (_, start) in PRODUCTS.items()),
              ", ".join(f"{s} {o.stock[s]}" for s in sorted(o.stock))),
        Check("every unpaid order was cancelled by its payment timeout",
              all(r.status == "cancelled" and r.reason == "payment-timeout"
                  for r in o.orders if not r.auto_pay),
              f"{sum(1 for r in o.orders if not r.auto_pay)} never paid, "
              f"{sum(1 for r in cancelled if r.reason == 'payment-timeout')} timed out, "
              f"{sum(1 for r in cancelled if r.reason == 'out-of-stock')} out of stock"),
        Check("each order's status stream arrived in order (created -> paid -> shipped)",
              not o.obs.out_of_order and all(
                  tuple(o.obs.streams.get(r.id, ())) == LIFECYCLE[r.status] for r in o.orders),
              f"{len(o.obs.streams)} streams, {len(o.obs.out_of_order)} out of order, "
              f"{o.obs.repeated_steps} repeated steps"),
        _invisible(o, by_id),
        Check("the crashed order was committed by the broker's check-back",
              bool(o.crashed) and all(
                  (i, "COMMIT") in o.obs.check_backs and i in by_id
                  and o.obs.received("inventory-service", [i]) for i in o.crashed),
              f"check-backs: {o.obs.check_backs}"),
        _fan_out(o, paid_ids),
        Check("duplicates changed nothing and were absorbed",
              o.key_store_duplicates >= len(o.retried_sends) > 0
              and o.obs.inbox_duplicates >= len(o.crashed_payments) > 0,
              f"{o.key_store_duplicates} by the idempotency key store "
              f"({len(o.retried_sends)} sends repeated), {o.obs.inbox_duplicates} by the "
              f"payment inbox ({len(o.crashed_payments)} crashes after the charge)"),
        Check("logistics caught up after its restart",
              o.backlog_while_down > 0 and not any(r.status == "paid" for r in o.orders),
              f"{o.backlog_while_down} paid orders waited while it was down"),
        Check("peak shaving: every flash-sale request was written exactly once",
              o.intake_rows == o.burst and bool(o.lag_samples)
              and o.lag_samples[-1].counted == 0 and o.lag_samples[-1].broker == 0,
              f"{o.intake_rows:,} of {o.burst:,} written; backlog at the end: "
              f"{o.lag_samples[-1].counted if o.lag_samples else '?'} counted, "
              f"{o.lag_samples[-1].broker if o.lag_samples else '?'} at the broker"),
    ]  # fmt: skip
    return checks


def _invisible(o: Outcome, by_id: dict[str, OrderRow]) -> Check:
    leaked = [
        f"{i} seen by {who}" for i in o.rolled_back for who, got in o.obs.seen.items() if i in got
    ] + [f"{i} has a row" for i in o.rolled_back if i in by_id]
    detail = ", ".join(leaked) or f"{len(o.rolled_back)} rolled back, seen by none"
    return Check("rolled-back orders were never visible to any consumer",
                 bool(o.rolled_back) and not leaked, detail)  # fmt: skip


def _fan_out(o: Outcome, paid_ids: list[str]) -> Check:
    receivers = [*FANOUT_GROUPS, *(f"cache-invalidation@{n}:paid" for n in CACHE_NODES)]
    got = {r: sum(1 for i in paid_ids if i in o.obs.seen.get(r, ())) for r in receivers}
    return Check("fan-out: every paid order reached notification, analytics, loyalty and "
                 "every cache node (BROADCASTING)",
                 bool(paid_ids) and all(n == len(paid_ids) for n in got.values()),
                 ", ".join(f"{r.removesuffix(':paid')} {n}/{len(paid_ids)}"
                           for r, n in got.items()))  # fmt: skip


def lag_chart(samples: Sequence[LagSample], *, width: int = 40, rows: int = 24,
              bar: str = "#") -> list[str]:  # fmt: skip
    """The backlog over time as text: one row per sample (thinned to `rows`), a bar for the
    application's count, then that count and the broker's figure."""
    if not samples:
        return ["  (no samples)"]
    step = max(1, -(-len(samples) // rows))
    picked = list(samples[::step])
    if picked[-1] != samples[-1]:
        picked.append(samples[-1])
    top = max(s.counted for s in samples) or 1
    lines = [f"  {'':>7} {'':<{width + 2}} {'counted':>8} {'broker':>8}"]
    for s in picked:
        broker = "?" if s.broker is None else f"{s.broker:,}"
        lines.append(f"  {s.at_s:6.1f}s |{bar * round(width * s.counted / top):<{width}}| "
                     f"{s.counted:>8,} {broker:>8}")  # fmt: skip
    return lines


def print_summary(o: Outcome, cfg: DemoConfig, out: TextIO) -> None:
    """The readable end of the demo: lag chart, counts per group, transactions, verdict."""

    def say(line: str = "") -> None:
        print(line, file=out)

    utf = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
    say()
    say("   backlog of order-intake on order-request over time: counted by the app (sent -"
        " handled), and as the broker reports it (app.consumer_lag(): max offset - committed"
        " offset; consumers commit every 5 s, so it trails)")  # fmt: skip
    for line in lag_chart(o.lag_samples, bar="\u2588" if utf else "#"):
        say(line)
    say(f"   time to drain: {o.timings.get('drain_s', -1):.1f} s (all {o.burst:,} sent in "
        f"{o.timings.get('burst_send_s', -1):.2f} s); the broker reported 0 at "
        f"{o.timings.get('broker_drain_s', -1):.1f} s")  # fmt: skip
    say()
    say("Summary")
    status = Counter(r.reason or r.status for r in o.orders)
    say(f"  orders created            {len(o.orders)} ({status['shipped']} shipped, "
        f"{status['payment-timeout']} cancelled unpaid, {status['out-of-stock']} cancelled "
        f"out of stock)")  # fmt: skip
    say(f"  transactions              {len(o.orders) - len(o.crashed)} committed at once, "
        f"{len(o.rolled_back)} rolled back, {len(o.crashed)} committed by check-back "
        f"({', '.join(sorted({a for _, a in o.obs.check_backs})) or 'none'})")  # fmt: skip
    say(f"  duplicates absorbed       {o.key_store_duplicates} by the idempotency key store "
        f"(repeated sends), {o.obs.inbox_duplicates} by the payment inbox (redeliveries after "
        "a crash)")  # fmt: skip
    say(f"  logistics outage          {o.backlog_while_down} orders waited, caught up in "
        f"{o.timings.get('catch_up_s', -1):.1f} s")  # fmt: skip
    say(f"  flash sale                {o.burst:,} requests at {cfg.rate:,.0f}/s, drained in "
        f"{o.timings.get('drain_s', -1):.1f} s")  # fmt: skip
    say("  events per group (app.metrics.snapshot()):")
    say(f"    {'app':<22}{'group':<22}{'topic':<15}{'consumed':>9}{'acked':>8}{'retried':>8}"
        f"{'dups':>6}")  # fmt: skip
    for app in sorted(o.metrics):
        for (group, topic), n in sorted(o.metrics[app].consumed.items()):
            say(f"    {app:<22}{group:<22}{topic:<15}{n.consumed:>9,}{n.acked:>8,}"
                f"{n.retried:>8,}{n.duplicates:>6,}")  # fmt: skip
    say()
    say("Invariants")
    for c in o.checks:
        say(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}")
        say(f"         {c.detail}")
    verdict = "all invariants hold" if o.ok else "SOME INVARIANTS FAILED"
    say(f"\n{verdict} ({o.timings.get('total_s', 0):.1f} s)")
