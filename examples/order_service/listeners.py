"""The services' listeners: each service is a class whose `@rocket_listener` methods consume in
the service's own consumer group, so every service gets every event it subscribes to, keeps its
own offsets, and can stop and catch up without the others noticing.

| service (group)                   | consumes                           | publishes          |
|-----------------------------------|------------------------------------|--------------------|
| inventory-service                 | order:created                      | stock:reserved,    |
|                                   |                                    | order:cancelled    |
| payment-service                   | stock:reserved (idempotent)        | order:paid         |
| logistics-service                 | order:paid                         | order:shipped      |
| notification, analytics, loyalty  | order:paid (fan-out: a group each) |                    |
| cache-invalidation (every node)   | order:paid/shipped/cancelled,      |                    |
|                                   | BROADCASTING                       |                    |
| status-tracker                    | order-status, ORDERLY              |                    |
| order-intake                      | order-request, batches, rate-limit |                    |

The order service's own listeners (status relay, unpaid-order canceller) are in `flows.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rmqkit.starter import ListenerRegistry, MessageMeta, RocketApp, RocketTemplate, rocket_listener

from order_service import db
from order_service.db import Database, Outcome
from order_service.models import (
    ORDER_CANCELLED,
    ORDER_PAID,
    ORDER_SHIPPED,
    ORDER_TOPIC,
    REQUEST_TOPIC,
    STATUS_TOPIC,
    STOCK_RESERVED,
    STOCK_TOPIC,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRef,
    OrderRequested,
    OrderShipped,
    OrderStatusChanged,
    StockReserved,
)
from order_service.observe import IntakeMeter, Observations, TokenBucket
from order_service.scenario import Chaos, DemoConfig, SimulatedCrash

FIRST: Final = "CONSUME_FROM_FIRST_OFFSET"  # every group reads a new topic from its start
# One registry per service: each service's RocketApp runs only its own listeners.
INVENTORY, PAYMENT, LOGISTICS = ListenerRegistry(), ListenerRegistry(), ListenerRegistry()
NOTIFICATION, ANALYTICS, LOYALTY = ListenerRegistry(), ListenerRegistry(), ListenerRegistry()
CACHE, TRACKER, INTAKE = ListenerRegistry(), ListenerRegistry(), ListenerRegistry()


@dataclass
class ServiceContext:
    """What every service shares in this one-process demo (in production: its own database
    connection and configuration, nothing else)."""

    db: Database
    obs: Observations
    chaos: Chaos
    cfg: DemoConfig


class Service:
    """A service: its context, and the template of the RocketApp it runs in (after start)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.obs = ctx.obs
        self.app: RocketApp | None = None

    def bind(self, app: RocketApp) -> None:
        """The app whose template this service publishes with."""
        self.app = app

    @property
    def template(self) -> RocketTemplate:
        assert self.app is not None, "bind() the service to its app first"
        return self.app.template


class InventoryService(Service):
    """Reserves stock for each new order; cancels the order when the shelf is empty."""

    @rocket_listener(topic=ORDER_TOPIC, tag="created", group="inventory-service",
                     registry=INVENTORY, consume_from_where=FIRST,
                     delay_level_when_next_consume=1)  # fmt: skip
    async def reserve(self, order: OrderCreated) -> None:
        self.obs.saw("inventory-service", order.order_id)
        step = await self.db.call(db.reserve_stock, order.order_id)
        if step.outcome is Outcome.OUT_OF_STOCK:
            await self.template.send(ORDER_CANCELLED, OrderCancelled(
                order_id=order.order_id, reason="out-of-stock"), keys=order.order_id)  # fmt: skip
            return
        if step.outcome is Outcome.RESERVED or step.status == "reserved":
            # Published again after a redelivery (ALREADY): the crash may have come before it.
            event = StockReserved(**order.model_dump())
            key = f"reserve:{order.order_id}"
            await self.template.send(STOCK_RESERVED, event, keys=order.order_id,
                                     idempotency_key=key)  # fmt: skip
            if step.outcome is Outcome.RESERVED and self.ctx.chaos.retry_send(order.order_id):
                # The broker stored the send but its answer "got lost": the producer sends the
                # same event again, as its retry would. The payment listener must not charge twice.
                await self.template.send(STOCK_RESERVED, event, keys=order.order_id,
                                         idempotency_key=key)  # fmt: skip


class PaymentService(Service):
    """Charges the customer's wallet for reserved orders, exactly once per order.

    Two layers stop double charges. `idempotency_key="auto"` makes the starter skip a message
    whose idempotency key it has seen handled (a producer's retry): the handler is not even
    called, and `app.metrics` counts a duplicate. That store cannot know whether a handler that
    *failed* had already committed its effect, so the charge itself records the message in a
    SQL inbox inside the payment's own transaction: a redelivery after such a failure finds the
    inbox row and changes nothing.
    """

    group = "payment-service"

    @rocket_listener(topic=STOCK_TOPIC, tag="reserved", group="payment-service",
                     registry=PAYMENT, idempotency_key="auto", consume_from_where=FIRST,
                     delay_level_when_next_consume=1)  # fmt: skip
    async def charge(self, event: StockReserved, meta: MessageMeta) -> None:
        self.obs.saw(self.group, event.order_id)
        if not event.auto_pay:
            return  # the customer pays by hand; if they never do, the order times out
        key = meta.idempotency_key or meta.msg_id
        step = await self.db.call(db.charge, event.order_id, self.group, key)
        if step.outcome is Outcome.DUPLICATE:
            self.obs.inbox_duplicates += 1
        if step.outcome is Outcome.CHARGED and self.ctx.chaos.crash_after_payment(event.order_id):
            raise SimulatedCrash("the payment committed, then the consumer died before the ack")
        if step.payment_id is not None and step.status in ("paid", "shipped"):
            paid = OrderPaid(
                order_id=event.order_id,
                customer=event.customer,
                amount_cents=event.amount_cents,
                payment_id=step.payment_id,
            )
            await self.template.send(ORDER_PAID, paid, keys=event.order_id,
                                     idempotency_key=f"paid:{event.order_id}")  # fmt: skip


class LogisticsService(Service):
    """Ships paid orders."""

    @rocket_listener(topic=ORDER_TOPIC, tag="paid", group="logistics-service",
                     registry=LOGISTICS, consume_from_where=FIRST,
                     delay_level_when_next_consume=1)  # fmt: skip
    async def ship(self, paid: OrderPaid) -> None:
        self.obs.saw("logistics-service", paid.order_id)
        step = await self.db.call(db.ship, paid.order_id)
        if step.outcome in (Outcome.SHIPPED, Outcome.ALREADY):
            tracking = db.tracking_no(paid.order_id)
            shipped = OrderShipped(order_id=paid.order_id, tracking_no=tracking)
            await self.template.send(ORDER_SHIPPED, shipped, keys=paid.order_id)


class NotificationService(Service):
    """Tells the customer their order is paid (here: counts the e-mails it would send)."""

    @rocket_listener(topic=ORDER_TOPIC, tag="paid", group="notification-service",
                     registry=NOTIFICATION, consume_from_where=FIRST)  # fmt: skip
    async def email_receipt(self, paid: OrderPaid) -> None:
        self.obs.saw("notification-service", paid.order_id)


class AnalyticsService(Service):
    """Adds paid orders to the revenue figures."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.revenue_cents: dict[str, int] = {}  # order id -> amount: a replay adds nothing

    @rocket_listener(topic=ORDER_TOPIC, tag="paid", group="analytics-service",
                     registry=ANALYTICS, consume_from_where=FIRST)  # fmt: skip
    async def count_revenue(self, paid: OrderPaid) -> None:
        self.obs.saw("analytics-service", paid.order_id)
        self.revenue_cents[paid.order_id] = paid.amount_cents


class LoyaltyService(Service):
    """Awards a point per euro spent."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.awarded: dict[str, tuple[str, int]] = {}  # order id -> (customer, points)

    @rocket_listener(topic=ORDER_TOPIC, tag="paid", group="loyalty-service",
                     registry=LOYALTY, consume_from_where=FIRST)  # fmt: skip
    async def award_points(self, paid: OrderPaid) -> None:
        self.obs.saw("loyalty-service", paid.order_id)
        self.awarded[paid.order_id] = (paid.customer, paid.amount_cents // 100)

    def points(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for customer, pts in self.awarded.values():
            out[customer] = out.get(customer, 0) + pts
        return out


class CacheNode(Service):
    """One node's cache of order pages. BROADCASTING: every node receives every change, since
    each holds its own copy (in CLUSTERING, only one node of the group would hear of it).

    Args:
        node: the node's name (its consumer's instance name).
    """

    def __init__(self, ctx: ServiceContext, node: str) -> None:
        super().__init__(ctx)
        self.node = node
        self.cached: dict[str, str] = {}

    @rocket_listener(topic=ORDER_TOPIC, tag="paid || shipped || cancelled",
                     group="cache-invalidation", message_model="BROADCASTING",
                     registry=CACHE, consume_from_where=FIRST)  # fmt: skip
    async def invalidate(self, ref: OrderRef, meta: MessageMeta) -> None:
        self.cached.pop(ref.order_id, None)
        self.obs.saw(f"cache-invalidation@{self.node}:{meta.tags}", ref.order_id)


class StatusTracker(Service):
    """Follows each order's status stream. ORDERLY: one queue's messages one at a time, in the
    order they were stored, and `send_orderly` put all of an order's steps on one queue."""

    @rocket_listener(topic=STATUS_TOPIC, tag="changed", group="status-tracker",
                     consume_mode="ORDERLY", suspend_current_queue_time_ms=100,
                     registry=TRACKER, consume_from_where=FIRST)  # fmt: skip
    async def track(self, change: OrderStatusChanged) -> None:
        self.obs.record_status(change)


class OrderIntake(Service):
    """Writes flash-sale requests to the database at a steady rate, however fast they arrive:
    the queue absorbs the burst (peak shaving), the token bucket sets the pace.

    Args:
        meter: the intake's counters (the demo charts the backlog from them).
    """

    def __init__(self, ctx: ServiceContext, meter: IntakeMeter) -> None:
        super().__init__(ctx)
        self.meter = meter
        self.bucket = TokenBucket(ctx.cfg.rate)

    @rocket_listener(topic=REQUEST_TOPIC, tag="flash-sale", group="order-intake",
                     registry=INTAKE, batch_size=32, consume_concurrency=4,
                     consume_from_where=FIRST, delay_level_when_next_consume=1)  # fmt: skip
    async def accept(self, requests: list[OrderRequested]) -> None:
        await self.bucket.take(len(requests))
        written = await self.db.call(db.accept_requests, requests)
        self.meter.written += written  # after the await: += across it would lose updates
        self.meter.processed += len(requests)
