"""What the demo does and how much of it: the configuration (counts, rates, the payment timeout),
the catalogue and wallets it seeds, which orders it makes go wrong, and how.

Every "failure" is chosen from the order's number, so a run is repeatable; only timing varies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DELAY_LEVELS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0)
"""The first of RocketMQ's default delay levels (`messageDelayLevel=1s 5s 10s 30s 1m 2m ...`):
a payment timeout of one of these works on any broker, the bundled one included."""

PRODUCTS: dict[str, tuple[int, int]] = {
    "book": (1_500, 1_000_000),
    "lamp": (4_200, 1_000_000),
    "signed-print": (9_900, 3),  # a limited edition: more orders than prints
}
"""sku -> (price in cents, stock)."""
DISCONTINUED = ("vinyl", 2_500)
"""In the shop's (stale) catalogue but no longer in the database: an order for it fails its
local transaction, so the transactional message is rolled back."""
CACHE_NODES = ("cache-a", "cache-b")
"""The two instances of the cache service (one BROADCASTING consumer group)."""
WALLETS: dict[str, int] = {"alice": 10_000_000, "bob": 10_000_000, "carol": 10_000_000}
"""customer -> wallet balance in cents."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs (the command line and `ORDER_DEMO_*` variables set them).

    Attributes:
        orders: orders of the first wave (the order flow, fan-out and ordering).
        orders_while_down: orders created while the logistics service is stopped.
        signed_prints: orders for the limited edition (3 in stock), within the first wave.
        burst: flash-sale requests sent at once (peak shaving).
        rate: requests per second the intake consumer writes (its token bucket's rate).
        payment_timeout_s: how long an order may stay unpaid (a RocketMQ delay level).
        abandon_every: every n-th order's customer never pays (0: all pay).
        retry_send_every: every n-th reservation event is sent twice, as a producer retry would.
        crash_after_payment_every: every n-th payment fails after it committed, so RocketMQ
            redelivers it.
        name_server: a running cluster's NameServer; None starts an embedded one.
        data_dir: where the database and the embedded broker's store go (None: a temp dir).
        settle_timeout_s: how long to wait for any one stage before reporting it as failed.
    """

    orders: int = 40
    orders_while_down: int = 20
    signed_prints: int = 5
    burst: int = 20_000
    rate: float = 1_000.0
    payment_timeout_s: float = 5.0
    abandon_every: int = 6
    retry_send_every: int = 4
    crash_after_payment_every: int = 7
    name_server: str | None = None
    data_dir: Path | None = None
    settle_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.payment_timeout_s not in DELAY_LEVELS_S:
            levels = ", ".join(f"{s:g}" for s in DELAY_LEVELS_S)
            raise ValueError(f"payment timeout must be a delay level ({levels} s)")
        if self.orders < 1 or self.burst < 1 or self.rate <= 0:
            raise ValueError("orders and burst must be at least 1, rate positive")
        if not 0 <= self.signed_prints <= self.orders:
            raise ValueError("signed_prints must be between 0 and orders")

    @classmethod
    def from_env(cls, **overrides: object) -> DemoConfig:
        """Defaults, then `ORDER_DEMO_ORDERS`, `_BURST`, `_RATE`, `_PAYMENT_TIMEOUT_S`,
        `_ORDERS_WHILE_DOWN`, then `overrides`."""
        values: dict[str, object] = {
            "orders": _env_int("ORDER_DEMO_ORDERS", cls.orders),
            "orders_while_down": _env_int("ORDER_DEMO_ORDERS_WHILE_DOWN", cls.orders_while_down),
            "burst": _env_int("ORDER_DEMO_BURST", cls.burst),
            "rate": _env_float("ORDER_DEMO_RATE", cls.rate),
            "payment_timeout_s": _env_float("ORDER_DEMO_PAYMENT_TIMEOUT_S", cls.payment_timeout_s),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """One order the demo's customers will place."""

    number: int
    customer: str
    sku: str
    qty: int
    auto_pay: bool

    @property
    def price_cents(self) -> int:
        return PRODUCTS[self.sku][0] if self.sku in PRODUCTS else DISCONTINUED[1]


def plan_orders(cfg: DemoConfig, start: int, count: int, *, prints: int = 0) -> list[OrderPlan]:
    """`count` orders numbered from `start`: the first `prints` for the limited edition (always
    paid, so the edition sells out), then books and lamps; every `abandon_every`-th unpaid."""
    customers = sorted(WALLETS)
    plans = []
    for i in range(count):
        n = start + i
        limited = i < prints
        sku = "signed-print" if limited else ("book", "lamp")[n % 2]
        abandoned = not limited and cfg.abandon_every > 0 and n % cfg.abandon_every == 0
        plans.append(OrderPlan(n, customers[n % len(customers)], sku, 1 + n % 3 if not limited
                               else 1, auto_pay=not abandoned))  # fmt: skip
    return plans


class Chaos:
    """Decides which orders the demo breaks on purpose, and remembers what it broke.

    Args:
        cfg: the demo configuration (the `*_every` knobs).
    """

    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.retried_sends: list[str] = []
        self.crashed_payments: list[str] = []

    @staticmethod
    def _number(order_id: str) -> int:
        return int(order_id.rsplit("-", 1)[1])

    def retry_send(self, order_id: str) -> bool:
        """Whether the reservation event of this order is sent a second time with the same
        idempotency key (the first send's answer "got lost")."""
        every = self.cfg.retry_send_every
        if every <= 0 or self._number(order_id) % every != 1:
            return False
        self.retried_sends.append(order_id)
        return True

    def crash_after_payment(self, order_id: str) -> bool:
        """Whether the payment listener fails right after committing this order's payment (once
        per order), before it acknowledges the message or publishes `order:paid`."""
        every = self.cfg.crash_after_payment_every
        if every <= 0 or self._number(order_id) % every != 2 or order_id in self.crashed_payments:
            return False
        self.crashed_payments.append(order_id)
        return True


class SimulatedCrash(RuntimeError):
    """Raised where the demo pretends the process died."""
