"""The service's SQLite database: schema, seed data and the small repository functions each
service calls. Every state change is one `BEGIN IMMEDIATE` transaction that checks the order's
current status first, so redeliveries and races (a payment arriving as the timeout cancels the
order) resolve to one outcome instead of a double charge or a lost reservation.

The functions are synchronous (sqlite3); services call them through `Database.call`, which runs
them in a worker thread with a connection of their own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from rmqkit.starter import TransactionLog
from rmqkit.starter.idempotency import SqlInbox

from order_service.models import OrderCreated, OrderRequested

P = ParamSpec("P")
T = TypeVar("T")
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer's lock

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0));
CREATE TABLE IF NOT EXISTS accounts (
    customer TEXT PRIMARY KEY,
    balance_cents INTEGER NOT NULL CHECK (balance_cents >= 0));
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL REFERENCES accounts (customer),
    sku TEXT NOT NULL REFERENCES products (sku),
    qty INTEGER NOT NULL CHECK (qty > 0),
    amount_cents INTEGER NOT NULL,
    auto_pay INTEGER NOT NULL,
    status TEXT NOT NULL,  -- created, reserved, paid, shipped, cancelled
    reason TEXT,  -- why it was cancelled
    published INTEGER NOT NULL DEFAULT 0,  -- steps of the status stream sent so far
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- no UNIQUE on order_id: a double charge must show
    order_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    paid_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shipments (
    order_id TEXT PRIMARY KEY,
    tracking_no TEXT NOT NULL,
    shipped_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS intake (
    request_id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    accepted_at REAL NOT NULL);
"""


class Outcome(Enum):
    """What a repository call did."""

    RESERVED = "reserved"
    OUT_OF_STOCK = "out-of-stock"
    CHARGED = "charged"
    DECLINED = "declined"  # not enough money in the wallet: the order waits, then times out
    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    ALREADY = "already"  # the order is past this step: a redelivery or a late duplicate
    DUPLICATE = "duplicate"  # the inbox has this message: its effect was committed before
    SKIPPED = "skipped"  # the order's state rules the step out (e.g. paying a cancelled order)
    UNKNOWN = "unknown"  # no such order (a message from another run on a shared cluster)


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of a repository call and the order's status after it."""

    outcome: Outcome
    status: str | None = None
    payment_id: int | None = None


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: str
    customer: str
    sku: str
    qty: int
    amount_cents: int
    auto_pay: bool
    status: str
    reason: str | None
    published: int


class Database:
    """The service's SQLite file (WAL mode, so readers never wait for the writer).

    Args:
        path: the database file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.txlog = TransactionLog.sqlite(path, rollback_after_s=30.0)
        self.inbox = SqlInbox()

    def connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode: every transaction is opened explicitly."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... COMMIT (ROLLBACK on an exception): the write lock is taken
        before the first read, so a check-then-update cannot race another writer."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def call(
        self, fn: Callable[Concatenate[Database, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Run a repository function in a worker thread (sqlite3 blocks)."""
        return await asyncio.to_thread(fn, self, *args, **kw)

    # -- set-up -----------------------------------------------------------------------------------

    def create(self, products: dict[str, tuple[int, int]], balances: dict[str, int]) -> None:
        """Create the tables and seed them: products are sku -> (price_cents, stock)."""
        conn = self.connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
            conn.executemany(
                "INSERT INTO products VALUES (?, ?, ?)",
                [(sku, price, stock) for sku, (price, stock) in products.items()],
            )
            conn.executemany("INSERT INTO accounts VALUES (?, ?)", list(balances.items()))
        finally:
            conn.close()
        self.txlog.ensure_table()
        conn = sqlite3.connect(self.path)
        try:
            self.inbox.ensure_table(conn)
        finally:
            conn.close()


def _order(conn: sqlite3.Connection, order_id: str) -> OrderRow | None:
    row = conn.execute(
        "SELECT id, customer, sku, qty, amount_cents, auto_pay, status, reason, published"
        " FROM orders WHERE id = ?",
        (order_id,),
    ).fetchone()
    if row is None:
        return None
    oid, customer, sku, qty, amount, auto_pay, status, reason, published = row
    return OrderRow(oid, customer, sku, qty, amount, bool(auto_pay), status, reason, published)


# -- order service --------------------------------------------------------------------------------


def insert_order(db: Database, order: OrderCreated, tx_id: str) -> None:
    """The local transaction of order creation: the order row and the transaction-log row that
    answers the broker's check-back, committed together.

    Raises:
        sqlite3.IntegrityError: an unknown customer or product (nothing is written).
    """
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO orders (id, customer, sku, qty, amount_cents, auto_pay, status,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, 'created', ?)",
            (order.order_id, order.customer, order.sku, order.qty, order.amount_cents,
             int(order.auto_pay), time.time()),
        )  # fmt: skip
        db.txlog.record(conn, tx_id)


def get_order(db: Database, order_id: str) -> OrderRow | None:
    conn = db.connect()
    try:
        return _order(conn, order_id)
    finally:
        conn.close()


def mark_published(db: Database, order_id: str, steps: int) -> None:
    """Remember how much of the order's status stream was sent."""
    with db.transaction() as conn:
        conn.execute(
            "UPDATE orders SET published = MAX(published, ?) WHERE id = ?", (steps, order_id)
        )


def cancel_unpaid(db: Database, order_id: str) -> Step:
    """The payment deadline passed: cancel the order unless it was paid; put reserved stock
    back on the shelf."""
    with db.transaction() as conn:
        order = _order(conn, order_id)
        if order is None:
            return Step(Outcome.UNKNOWN)
        if order.status not in ("created", "reserved"):
            return Step(Outcome.SKIPPED, order.status)
        if order.status == "reserved":
            conn.execute(
                "UPDATE products SET stock = stock + ? WHERE sku = ?", (order.qty, order.sku)
            )
        conn.execute(
            "UPDATE orders SET status = 'cancelled', reason = 'payment-timeout' WHERE id = ?",
            (order_id,),
        )
        return Step(Outcome.CANCELLED, "cancelled")


# -- inventory ------------------------------------------------------------------------------------


def reserve_stock(db: Database, order_id: str) -> Step:
    """Take the order's items from stock, or cancel the order when there are not enough."""
    with db.transaction() as conn:
        order = _order(conn, order_id)
        if order is None:
            return Step(Outcome.UNKNOWN)
        if order.status != "created":
            return Step(Outcome.ALREADY, order.status)
        taken = conn.execute(
            "UPDATE products SET stock = stock - ? WHERE sku = ? AND stock >= ?",
            (order.qty, order.sku, order.qty),
        ).rowcount
        if taken:
            conn.execute("UPDATE orders SET status = 'reserved' WHERE id = ?", (order_id,))
            return Step(Outcome.RESERVED, "reserved")
        conn.execute(
            "UPDATE orders SET status = 'cancelled', reason = 'out-of-stock' WHERE id = ?",
            (order_id,),
        )
        return Step(Outcome.OUT_OF_STOCK, "cancelled")


# -- payment --------------------------------------------------------------------------------------


def charge(db: Database, order_id: str, scope: str, key: str) -> Step:
    """Charge the customer's wallet for a reserved order, exactly once.

    The inbox row for (scope, key) is written in the same transaction as the debit and the
    payment row: a redelivery after a crash finds it and changes nothing (`DUPLICATE`).
    """
    with db.transaction() as conn:
        if not db.inbox.claim_sync(conn, scope, key):
            order = _order(conn, order_id)
            return Step(Outcome.DUPLICATE, order.status if order else None,
                        _payment_id(conn, order_id))  # fmt: skip
        order = _order(conn, order_id)
        if order is None:
            return Step(Outcome.UNKNOWN)
        if order.status != "reserved":
            return Step(Outcome.SKIPPED, order.status, _payment_id(conn, order_id))
        debited = conn.execute(
            "UPDATE accounts SET balance_cents = balance_cents - ?"
            " WHERE customer = ? AND balance_cents >= ?",
            (order.amount_cents, order.customer, order.amount_cents),
        ).rowcount
        if not debited:
            return Step(Outcome.DECLINED, order.status)
        cur = conn.execute(
            "INSERT INTO payments (order_id, customer, amount_cents, paid_at) VALUES (?, ?, ?, ?)",
            (order_id, order.customer, order.amount_cents, time.time()),
        )
        conn.execute("UPDATE orders SET status = 'paid' WHERE id = ?", (order_id,))
        return Step(Outcome.CHARGED, "paid", cur.lastrowid)


def _payment_id(conn: sqlite3.Connection, order_id: str) -> int | None:
    row = conn.execute("SELECT MIN(id) FROM payments WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


# -- logistics ------------------------------------------------------------------------------------


def ship(db: Database, order_id: str) -> Step:
    """Record the shipment of a paid order."""
    with db.transaction() as conn:
        order = _order(conn, order_id)
        if order is None:
            return Step(Outcome.UNKNOWN)
        if order.status == "shipped":
            return Step(Outcome.ALREADY, "shipped")
        if order.status != "paid":
            return Step(Outcome.SKIPPED, order.status)
        conn.execute(
            "INSERT INTO shipments VALUES (?, ?, ?)", (order_id, tracking_no(order_id), time.time())
        )
        conn.execute("UPDATE orders SET status = 'shipped' WHERE id = ?", (order_id,))
        return Step(Outcome.SHIPPED, "shipped")


def tracking_no(order_id: str) -> str:
    return f"TRK-{order_id.upper()}"


# -- flash-sale intake ----------------------------------------------------------------------------


def accept_requests(db: Database, requests: Sequence[OrderRequested]) -> int:
    """Write a batch of flash-sale requests in one transaction; redelivered ones are ignored.
    Returns how many were new."""
    now = time.time()
    with db.transaction() as conn:
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO intake VALUES (?, ?, ?, ?, ?)",
            [(r.request_id, r.customer, r.sku, r.qty, now) for r in requests],
        )
        return conn.total_changes - before


# -- reads for the summary ------------------------------------------------------------------------


def query(db: Database, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of a read-only query."""
    conn = db.connect()
    try:
        return [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()]
    finally:
        conn.close()


def orders(db: Database, prefix: str) -> list[OrderRow]:
    """Every order whose id starts with `prefix` (this run's), by id."""
    conn = db.connect()
    try:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM orders WHERE id LIKE ? ORDER BY id", (prefix + "%",))]  # fmt: skip
        return [o for i in ids if (o := _order(conn, i)) is not None]
    finally:
        conn.close()
