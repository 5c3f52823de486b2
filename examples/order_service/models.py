"""The order service's events: pydantic models sent as JSON bodies, one per RocketMQ tag.

Domain events travel on the `order` and `stock` topics with one tag per event type (RocketMQ's
advice: a topic per business domain, a tag per kind of message), so a group subscribes to just
the tags it needs with a tag expression such as `paid || shipped`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Destinations, as "topic:tag" for the template.
ORDER_TOPIC = "order"
ORDER_CREATED = "order:created"
ORDER_PAID = "order:paid"
ORDER_SHIPPED = "order:shipped"
ORDER_CANCELLED = "order:cancelled"
STOCK_TOPIC = "stock"
STOCK_RESERVED = "stock:reserved"
STATUS_TOPIC = "order-status"
STATUS_CHANGED = "order-status:changed"
TIMEOUT_TOPIC = "order-timeout"
PAYMENT_DUE = "order-timeout:payment-due"
REQUEST_TOPIC = "order-request"
ORDER_REQUESTED = "order-request:flash-sale"
WARMUP_TAG = "warmup"
"""A tag nobody subscribes to: the demo sends it once per topic so the topics exist (as an
operator's `mqadmin updateTopic` would make them) before the consumers look up their routes."""

Status = Literal["created", "paid", "shipped", "cancelled"]
"""What the ordered status stream says about an order (the database has one more state,
`reserved`, which the stream folds into `created`)."""
CancelReason = Literal["out-of-stock", "payment-timeout"]


class Event(BaseModel):
    """Base of every event: immutable, unknown fields ignored (a newer producer may add some)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class OrderRef(Event):
    """Any order event read only for its order id (the status relay needs no more)."""

    order_id: str


class OrderCreated(Event):
    """An order was committed (sent as a transactional message with the order row)."""

    order_id: str
    customer: str
    sku: str
    qty: int = Field(gt=0)
    amount_cents: int = Field(ge=0)
    auto_pay: bool = Field(description="Pay from the customer's wallet; False: pays later.")


class StockReserved(Event):
    """The inventory set the order's items aside."""

    order_id: str
    customer: str
    sku: str
    qty: int
    amount_cents: int
    auto_pay: bool


class OrderPaid(Event):
    """The payment service charged the customer's wallet."""

    order_id: str
    customer: str
    amount_cents: int
    payment_id: int


class OrderShipped(Event):
    """The logistics service handed the parcel to a carrier."""

    order_id: str
    tracking_no: str


class OrderCancelled(Event):
    """The order will not be fulfilled; any reserved stock went back on the shelf."""

    order_id: str
    reason: CancelReason


class PaymentDue(Event):
    """A delayed message: when it arrives, an order still unpaid is cancelled."""

    order_id: str
    timeout_s: float


class OrderStatusChanged(Event):
    """One step of an order's status stream, sent orderly (hashed by order id)."""

    order_id: str
    status: Status
    seq: int = Field(ge=1, description="1 for created, 2 for paid or cancelled, 3 for shipped.")


class OrderRequested(Event):
    """A flash-sale order request: accepted at once, written to the database at a steady rate."""

    request_id: str
    customer: str
    sku: str
    qty: int = 1


LIFECYCLE: dict[str, tuple[Status, ...]] = {
    "created": ("created",),
    "reserved": ("created",),
    "paid": ("created", "paid"),
    "shipped": ("created", "paid", "shipped"),
    "cancelled": ("created", "cancelled"),
}
"""The status stream an order in a given database state has produced, in order."""
