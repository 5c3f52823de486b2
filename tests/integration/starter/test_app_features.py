"""RocketApp against a real broker: batches with partial failure, orderly listeners, idempotency,
request-reply, transactional flows with check-back, settings overrides."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from rmqkit.client.transaction import TransactionState
from rmqkit.starter import (
    BatchFailed,
    EmbeddedCluster,
    FlowRegistry,
    ListenerRegistry,
    MessageMeta,
    RocketApp,
    RocketSettings,
    TransactionLog,
    TxContext,
    rocket_listener,
    transactional_producer,
)
from rmqkit.starter.idempotency import SqliteIdempotencyStore
from rmqkit.testing.polling import check_for

pytestmark = pytest.mark.integration
FIRST = "CONSUME_FROM_FIRST_OFFSET"


class Step(BaseModel):
    order_id: str
    seq: int


class Quote(BaseModel):
    order_id: str
    price_cents: int


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "data") as c:
        yield c


async def test_batch_handler_retries_only_the_failed_messages(cluster: EmbeddedCluster) -> None:
    reg = ListenerRegistry()
    calls: list[list[int]] = []

    @rocket_listener(topic="b", group="batcher", registry=reg, batch_size=8,
                     consume_from_where=FIRST, delay_level_when_next_consume=1)
    async def handle(steps: list[Step], metas: list[MessageMeta]) -> None:
        calls.append([s.seq for s in steps])
        failed = [i for i, (s, m) in enumerate(zip(steps, metas, strict=True))
                  if s.seq % 3 == 0 and m.reconsume_times == 0]
        if failed:
            raise BatchFailed(failed)

    async with RocketApp(RocketSettings(name_server=cluster.name_server), listeners=reg) as app:
        await app.template.send_batch("b", [Step(order_id="x", seq=i) for i in range(7)])
        await check_for(lambda: sorted(s for c in calls for s in c) ==
                        sorted([*range(7), 0, 3, 6]), timeout=15)
    assert len(calls[0]) == 7  # one call for the whole batch
    assert sorted(s for c in calls[1:] for s in c) == [0, 3, 6]  # only the failed came back


async def test_orderly_listener_keeps_each_orders_steps_in_order(cluster: EmbeddedCluster) -> None:
    reg = ListenerRegistry()
    seen: dict[str, list[int]] = {}
    failed_once: set[tuple[str, int]] = set()

    @rocket_listener(topic="status", group="tracker", registry=reg, consume_mode="ORDERLY",
                     consume_from_where=FIRST, suspend_current_queue_time_ms=50)
    async def track(step: Step) -> None:
        if step.seq == 1 and (step.order_id, 1) not in failed_once:
            failed_once.add((step.order_id, 1))
            raise RuntimeError("transient")  # retried in place, before seq 2
        seen.setdefault(step.order_id, []).append(step.seq)

    async with RocketApp(RocketSettings(name_server=cluster.name_server), listeners=reg) as app:
        for seq in range(4):
            for oid in ("a", "b", "c"):
                await app.template.send_orderly("status", Step(order_id=oid, seq=seq),
                                                hash_key=oid)
        await check_for(lambda: all(len(seen.get(o, [])) == 4 for o in "abc"), timeout=20)
    assert seen == {o: [0, 1, 2, 3] for o in "abc"}


async def test_idempotency_key_absorbs_duplicate_sends(
    cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    reg = ListenerRegistry()
    balance: dict[str, int] = {}

    @rocket_listener(topic="pay", group="ledger", registry=reg, consume_from_where=FIRST,
                     idempotency_key="auto")
    async def pay(step: Step) -> None:
        balance[step.order_id] = balance.get(step.order_id, 0) + 10

    store = SqliteIdempotencyStore(tmp_path / "idem.db")
    s = RocketSettings(name_server=cluster.name_server)
    async with RocketApp(s, listeners=reg, idempotency_store=store) as app:
        for _ in range(3):  # the same business payment sent three times
            await app.template.send("pay", Step(order_id="o1", seq=0), idempotency_key="pay-o1")
        await app.template.send("pay", Step(order_id="o2", seq=0), idempotency_key="pay-o2")
        await check_for(lambda: balance.get("o2") == 10 and _duplicates(app) == 2, timeout=10)
    await store.close()
    assert balance == {"o1": 10, "o2": 10}


def _duplicates(app: RocketApp) -> int:
    return sum(c.duplicates for c in app.metrics.snapshot().consumed.values())


async def test_request_reply_through_the_template(cluster: EmbeddedCluster) -> None:
    reg = ListenerRegistry()

    @rocket_listener(topic="quote", group="pricer", registry=reg, consume_from_where=FIRST)
    async def price(step: Step) -> Quote:
        return Quote(order_id=step.order_id, price_cents=100 * (step.seq + 1))

    async with RocketApp(RocketSettings(name_server=cluster.name_server), listeners=reg) as app:
        quote = await app.template.send_and_receive(
            "quote", Step(order_id="q", seq=2), Quote, timeout_ms=10_000
        )
    assert quote == Quote(order_id="q", price_cents=300)


async def test_transactional_flows_commit_roll_back_and_check_back(
    cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    db = tmp_path / "orders.db"
    txlog = TransactionLog.sqlite(db, rollback_after_s=0)
    txlog.ensure_table()
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
    flows, reg = FlowRegistry(), ListenerRegistry()
    received: list[str] = []

    @transactional_producer("create-order", outbox=txlog, registry=flows)
    class CreateOrder:
        def execute(self, step: Step, tx: TxContext) -> TransactionState | bool | None:
            conn = sqlite3.connect(db)
            with conn:
                conn.execute("INSERT INTO orders VALUES (?)", (step.order_id,))
                txlog.record(conn, tx.tx_id)
            conn.close()
            if step.seq == 1:
                return None  # "crash" between the local commit and the broker commit
            return True

    @transactional_producer("refund", registry=flows)
    class Refund:
        async def execute(self, step: Step, tx: TxContext) -> bool:
            return False  # the local step failed: roll the message back

        async def check(self, step: Step, meta: MessageMeta) -> TransactionState:
            return TransactionState.ROLLBACK

    @rocket_listener(topic="orders", group="inventory", registry=reg, consume_from_where=FIRST)
    async def on_order(step: Step) -> None:
        received.append(step.order_id)

    cluster_kw = {"transaction_check_interval_ms": 200, "transaction_timeout_ms": 100}
    async with EmbeddedCluster(tmp_path / "tx", **cluster_kw) as txc:
        s = RocketSettings(name_server=txc.name_server)
        async with RocketApp(s, listeners=reg, flows=flows) as app:
            r1 = await app.template.send_in_transaction("orders", Step(order_id="o1", seq=0),
                                                        flow="create-order")
            r2 = await app.template.send_in_transaction("orders", Step(order_id="o2", seq=1),
                                                        flow="create-order")
            r3 = await app.template.send_in_transaction("orders", Step(order_id="o3", seq=0),
                                                        flow="refund")
            assert (r1.state, r2.state, r3.state) == (
                TransactionState.COMMIT, TransactionState.UNKNOWN, TransactionState.ROLLBACK)
            # o2 is committed by the broker's check-back, answered from the outbox row
            await check_for(lambda: sorted(received) == ["o1", "o2"], timeout=20)
    assert "o3" not in received


async def test_settings_disable_a_listener_and_conflicts_fail_fast(
    cluster: EmbeddedCluster,
) -> None:
    reg = ListenerRegistry()

    @rocket_listener(topic="t", group="g", registry=reg)
    async def one(body: bytes) -> None: ...

    @rocket_listener(topic="t2", group="g", registry=reg, message_model="BROADCASTING")
    async def two(body: bytes) -> None: ...

    s = RocketSettings(name_server=cluster.name_server)
    with pytest.raises(Exception, match="message_model"):
        async with RocketApp(s, listeners=reg):
            pass
    s2 = RocketSettings.model_validate(
        {"name_server": cluster.name_server,
         "consumer": {"listeners": {"g": {"t2": {"enabled": False}}}}}
    )
    async with RocketApp(s2, listeners=reg) as app:
        assert list(app.groups["g"].routes) == ["t"]


async def test_send_delayed_by_level_seconds_and_time(cluster: EmbeddedCluster) -> None:
    from datetime import UTC, datetime, timedelta

    reg = ListenerRegistry()
    got: dict[int, tuple[int, int]] = {}  # seq -> (born ms, arrival ms)

    @rocket_listener(topic="later", group="waiter", registry=reg, consume_from_where=FIRST)
    async def wait(step: Step, meta: MessageMeta) -> None:
        import time

        got[step.seq] = (meta.born_timestamp_ms, int(time.time() * 1000))

    async with RocketApp(RocketSettings(name_server=cluster.name_server), listeners=reg) as app:
        await app.template.send_delayed("later", Step(order_id="a", seq=1), level=1)  # 1 s
        await app.template.send_delayed("later", Step(order_id="a", seq=2), seconds=1.5)  # timer
        at = datetime.now(UTC) + timedelta(seconds=2)
        await app.template.send_delayed("later", Step(order_id="a", seq=3), at=at)
        await check_for(lambda: len(got) == 3, timeout=20)
    assert got[1][1] - got[1][0] >= 1000
    assert got[2][1] - got[2][0] >= 1500
    assert got[3][1] >= int(at.timestamp() * 1000)


async def test_consumer_lag_counts_what_a_stopped_group_has_not_consumed(
    cluster: EmbeddedCluster,
) -> None:
    from rmqkit.starter.transport import RemotingTransport

    reg = ListenerRegistry()
    seen: list[int] = []

    @rocket_listener(topic="backlog", group="slow", registry=reg, consume_from_where=FIRST)
    async def slow(step: Step) -> None:
        seen.append(step.seq)

    s = RocketSettings(name_server=cluster.name_server)
    async with RocketApp(s, listeners=reg) as app:
        await app.template.send("backlog", Step(order_id="x", seq=0))
        await check_for(lambda: seen == [0], timeout=10)
        await check_for(lambda: _lag_is(app, 0), timeout=15)  # committed offsets reach the broker
    # the group is stopped (its offsets committed on stop); five more arrive meanwhile
    async with RocketApp(s, listeners=ListenerRegistry()) as producer_only:
        for i in range(1, 6):
            await producer_only.template.send("backlog", Step(order_id="x", seq=i))
    transport = RemotingTransport(cluster.name_server)
    try:
        assert await transport.consumer_lag("slow", ["backlog"]) == {"backlog": 5}
    finally:
        await transport.close()
    async with RocketApp(s, listeners=reg) as app:  # it comes back and catches up
        await check_for(lambda: len(seen) == 6, timeout=10)
        await check_for(lambda: _lag_is(app, 0), timeout=15)


async def _lag_is(app: RocketApp, n: int) -> bool:
    return (await app.consumer_lag("slow")).get(("slow", "backlog")) == n
