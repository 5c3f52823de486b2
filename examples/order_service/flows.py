"""The order service: creating an order with a transactional message, relaying each order's
status as an ordered stream, and cancelling orders left unpaid (fed by a delayed message).

Creating an order writes the order row and sends `order:created` together or not at all:
`send_in_transaction` first stores a *half* message the consumers cannot see, then runs
`CreateOrder.execute` (the local SQLite transaction, which also writes a `TransactionLog` row),
then commits or rolls back the half message. If the process dies between the local commit and
the broker commit, the broker asks the producer group later (a *check-back*); `CreateOrder.check`
answers from the `TransactionLog` row, so the order is announced after all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass

from rmqkit.starter import (
    FlowRegistry,
    ListenerRegistry,
    MessageMeta,
    TransactionState,
    TxContext,
    rocket_listener,
    transactional_producer,
)

from order_service import db
from order_service.db import Outcome
from order_service.listeners import FIRST, Service, ServiceContext
from order_service.models import (
    LIFECYCLE,
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_TOPIC,
    PAYMENT_DUE,
    STATUS_CHANGED,
    TIMEOUT_TOPIC,
    OrderCancelled,
    OrderCreated,
    OrderRef,
    OrderStatusChanged,
    PaymentDue,
)
from order_service.scenario import OrderPlan, SimulatedCrash

ORDER_FLOWS = FlowRegistry()
ORDER_SERVICE = ListenerRegistry()


@transactional_producer("create-order", registry=ORDER_FLOWS)
class CreateOrder(Service):
    """The local transaction of order creation, and the answer to the broker's check-back."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.crash_before_broker_commit: set[str] = set()
        """Order ids whose creation "crashes" after the local commit (set by the demo)."""

    async def execute(self, order: OrderCreated, tx: TxContext) -> bool:
        """Insert the order row and its transaction-log row in one SQLite transaction.

        Returns True (commit the message), False (roll it back: the local transaction failed).
        """
        try:
            await self.db.call(db.insert_order, order, tx.tx_id)
        except sqlite3.IntegrityError as exc:  # e.g. a product no longer in the database
            self.obs.rolled_back.append((order.order_id, str(exc)))
            return False
        if order.order_id in self.crash_before_broker_commit:
            # Committed locally; the broker hears UNKNOWN and will check back.
            raise SimulatedCrash("crashed between the local commit and the broker commit")
        return True

    async def check(self, order: OrderCreated, meta: MessageMeta) -> TransactionState:
        """The broker's check-back: COMMIT when the transaction-log row exists."""
        state = await self.db.txlog.state(meta.msg_id, meta.born_timestamp_ms)
        self.obs.check_backs.append((order.order_id, state.name))
        return state


@dataclass(frozen=True, slots=True)
class Placed:
    """What placing an order led to."""

    order_id: str
    state: str  # COMMIT, ROLLBACK, or CRASHED (the broker will check back)


async def place_order(flow: CreateOrder, plan: OrderPlan, run_id: str) -> Placed:
    """The shop's front door: create one order (row + `order:created`, atomically)."""
    order = OrderCreated(
        order_id=order_id(run_id, plan.number), customer=plan.customer, sku=plan.sku,
        qty=plan.qty, amount_cents=plan.qty * plan.price_cents, auto_pay=plan.auto_pay,
    )  # fmt: skip
    try:
        result = await flow.template.send_in_transaction(
            ORDER_CREATED, order, flow="create-order", keys=order.order_id
        )
    except SimulatedCrash:
        return Placed(order.order_id, "CRASHED")
    return Placed(order.order_id, result.state.name)


def order_id(run_id: str, number: int) -> str:
    return f"{run_id}-{number:05d}"


class OrderService(Service):
    """Relays each order's status to the ordered `order-status` stream and cancels orders
    that stay unpaid past the deadline.

    The stream is derived from the database (the single source of an order's status) and sent
    under a per-order lock, so it is in order even when the events that move the order arrive
    in another order (a fast payment's `order:paid` can overtake the relay's `order:created`).
    """

    group = "order-service"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        # One lock per order seen (a long-running service would drop those of finished orders).
        self._locks: dict[str, asyncio.Lock] = {}

    @rocket_listener(topic=ORDER_TOPIC, tag="created || paid || shipped || cancelled",
                     group="order-service", registry=ORDER_SERVICE, consume_from_where=FIRST,
                     delay_level_when_next_consume=1)  # fmt: skip
    async def relay_status(self, ref: OrderRef) -> None:
        self.obs.saw(f"{self.group}:relay", ref.order_id)
        lock = self._locks.setdefault(ref.order_id, asyncio.Lock())
        async with lock:
            order = await self.db.call(db.get_order, ref.order_id)
            if order is None:
                return  # not one of ours (an earlier run's message on a shared cluster)
            stream = LIFECYCLE[order.status]
            for seq in range(order.published + 1, len(stream) + 1):
                status = stream[seq - 1]
                change = OrderStatusChanged(order_id=order.id, status=status, seq=seq)
                await self.template.send_orderly(STATUS_CHANGED, change, hash_key=order.id,
                                                 keys=order.id)  # fmt: skip
                if status == "created" and order.status in ("created", "reserved"):
                    await self._start_payment_clock(order.id)
                await self.db.call(db.mark_published, order.id, seq)

    async def _start_payment_clock(self, oid: str) -> None:
        timeout_s = self.ctx.cfg.payment_timeout_s
        await self.template.send_delayed(PAYMENT_DUE, PaymentDue(order_id=oid, timeout_s=timeout_s),
                                         seconds=timeout_s, keys=oid)  # fmt: skip

    @rocket_listener(topic=TIMEOUT_TOPIC, tag="payment-due", group="order-service",
                     registry=ORDER_SERVICE, consume_from_where=FIRST,
                     delay_level_when_next_consume=1)  # fmt: skip
    async def cancel_if_unpaid(self, due: PaymentDue) -> None:
        self.obs.saw(f"{self.group}:timeout", due.order_id)
        step = await self.db.call(db.cancel_unpaid, due.order_id)
        if step.outcome is Outcome.CANCELLED:
            await self.template.send(ORDER_CANCELLED, OrderCancelled(
                order_id=due.order_id, reason="payment-timeout"), keys=due.order_id)  # fmt: skip
