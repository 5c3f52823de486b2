"""Starter listeners, the template and transactional flows run through `RocketApp` on the
in-memory transport: outcomes (RetryLater, GiveUp, payload errors, plain exceptions), idempotency,
request-reply, transactions, several instances of one service, and the recording helpers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from rmqkit.common.properties import Prop
from rmqkit.starter import (
    FlowRegistry,
    GiveUp,
    ListenerRegistry,
    MessageMeta,
    RetryLater,
    RocketApp,
    RocketSettings,
    TransactionState,
    TxContext,
    rocket_listener,
    transactional_producer,
)
from rmqkit.starter.meta import ERROR_PROPERTY
from rmqkit.testing.memory import MemoryTransport, RocketTestAppFactory
from rmqkit.testing.recording import assert_published, record_calls


class Order(BaseModel):
    id: str
    amount: int = 0


@pytest.fixture
def registry() -> ListenerRegistry:
    return ListenerRegistry()


async def test_a_listener_gets_typed_payloads_and_their_meta(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", tag="paid", registry=registry)
    async def on_paid(order: Order, meta: MessageMeta) -> None: ...

    rec = record_calls(on_paid)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        sent = await t.template.send("orders:paid", Order(id="o-1", amount=5), keys="o-1")
        await t.template.send("orders:refunded", Order(id="o-2"))
        await t.drain()
    rec.assert_called_once_with(Order(id="o-1", amount=5))
    meta = rec.calls[0].meta
    assert isinstance(meta, MessageMeta)
    assert (meta.topic, meta.tags, meta.keys, meta.group) == ("orders", "paid", ("o-1",), "billing")
    assert meta.msg_id == sent.msg_id and meta.reconsume_times == 0


async def test_retry_later_redelivers_after_its_delay(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", registry=registry)
    async def on_order(order: Order, meta: MessageMeta) -> None:
        if meta.reconsume_times == 0:
            raise RetryLater(delay=5)

    rec = record_calls(on_order)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        await t.template.send("orders", Order(id="o-1"))
        await t.drain()
        assert rec.call_count == 1 and len(t.broker.retry("billing")) == 1
        await t.advance(4)
        assert rec.call_count == 1
        await t.advance(1)
        assert [m.reconsume_times for m in rec.metas] == [0, 1]
        assert rec.calls[1].error is None and t.broker.retry("billing") == []


async def test_give_up_dead_letters_at_once_with_the_reason(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", registry=registry)
    async def on_order(order: Order) -> None:
        raise GiveUp("unknown customer")

    rec = record_calls(on_order)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        sent = await t.template.send("orders:paid", Order(id="o-1"))
        await t.advance(3600)
        [dead] = t.dlq("billing")
    rec.assert_called(1)
    assert dead.properties[ERROR_PROPERTY] == "unknown customer"
    assert dead.properties[Prop.DLQ_ORIGIN_TOPIC] == "orders"
    assert (dead.msg_id, dead.tags) == (sent.msg_id, "paid")


async def test_a_payload_that_does_not_validate_is_dead_lettered_without_a_call(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", registry=registry)
    async def on_order(order: Order) -> None: ...

    rec = record_calls(on_order)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        await t.template.send("orders", {"amount": "not a number"})
        await t.advance(3600)
        [dead] = t.dlq("billing")
    rec.assert_not_called()
    assert "Order" in dead.properties[ERROR_PROPERTY]
    assert dead.body == b'{"amount":"not a number"}'


async def test_a_plain_exception_is_retried_then_dead_lettered_by_the_broker(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", max_reconsume_times=2, registry=registry)
    async def on_order(order: Order) -> None:
        raise ValueError("flaky")

    rec = record_calls(on_order)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        await t.template.send("orders", Order(id="o-1"))
        await t.advance(3600)
        [dead] = t.dlq("billing")
    assert rec.call_count == 3 and all(isinstance(c.error, ValueError) for c in rec.calls)
    assert dead.reconsume_times == 3 and ERROR_PROPERTY not in dead.properties


async def test_idempotency_skips_a_duplicate(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", idempotency_key="auto", registry=registry)
    async def on_order(order: Order) -> None: ...

    rec = record_calls(on_order)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        for _ in range(2):
            await t.template.send("orders", Order(id="o-1"), idempotency_key="o-1")
        await t.template.send("orders", Order(id="o-2"), idempotency_key="o-2")
        await t.drain()
        assert sorted(o.id for o in rec.payloads) == ["o-1", "o-2"]
        assert len(t.published("orders")) == 3


METHOD_LISTENERS = ListenerRegistry()


class Billing:
    """Listener methods live in classes at module level (the app finds the class by name)."""

    def __init__(self) -> None:
        self.total = 0

    @rocket_listener(topic="orders", group="billing", registry=METHOD_LISTENERS)
    def on_order(self, order: Order) -> None:  # a sync listener runs in a worker thread
        self.total += order.amount


async def test_a_method_listener_is_recorded(rocket_test_app: RocketTestAppFactory) -> None:
    billing = Billing()
    rec = record_calls(*METHOD_LISTENERS)
    async with rocket_test_app(listeners=rec.specs, instances=[billing]) as t:
        await t.template.send("orders", Order(id="o-1", amount=7))
        await t.drain()
    assert rec.payloads == [Order(id="o-1", amount=7)] and billing.total == 7


async def test_a_listener_answers_a_request(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="quotes", group="pricing", registry=registry)
    async def quote(order: Order) -> dict[str, Any]:
        return {"id": order.id, "price": order.amount * 2}

    async with rocket_test_app(listeners=registry) as t:
        answer = await t.template.send_and_receive("quotes", Order(id="o-1", amount=21), dict)
    assert answer == {"id": "o-1", "price": 42}


async def test_transactional_flows_commit_roll_back_and_answer_check_backs(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    flows = FlowRegistry()
    committed_locally: set[str] = set()

    @transactional_producer("create-order", registry=flows)
    class CreateOrder:
        async def execute(self, order: Order, tx: TxContext) -> bool | None:
            if order.id == "unsure":
                committed_locally.add(tx.tx_id)
                return None  # UNKNOWN: the broker asks check() later
            return order.id != "rollback"

        async def check(self, order: Order, meta: MessageMeta) -> TransactionState:
            if meta.msg_id in committed_locally:
                return TransactionState.COMMIT
            return TransactionState.ROLLBACK

    @rocket_listener(topic="orders", group="shipping", registry=registry)
    async def ship(order: Order) -> None: ...

    rec = record_calls(ship)
    async with rocket_test_app(listeners=[rec.spec], flows=flows) as t:
        for oid in ("ok", "rollback", "unsure"):
            await t.template.send_in_transaction("orders", Order(id=oid), flow="create-order")
        await t.drain()
        assert [o.id for o in rec.payloads] == ["ok"]
        assert len(t.broker.half_messages()) == 1
        await t.advance(60)  # the check round
        assert [o.id for o in rec.payloads] == ["ok", "unsure"]
        assert t.broker.half_messages() == []


async def test_two_instances_of_a_service_share_its_group(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", registry=registry)
    async def on_order(order: Order) -> None: ...

    first, second = record_calls(on_order), record_calls(on_order)
    async with (
        rocket_test_app(listeners=[first.spec]) as a,
        rocket_test_app(listeners=[second.spec]),
    ):
        for i in range(8):
            await a.template.send("orders", Order(id=f"o-{i}"))
        await a.drain()
    ids = [o.id for o in first.payloads + second.payloads]
    assert sorted(ids) == sorted(f"o-{i}" for i in range(8))
    assert first.call_count == second.call_count == 4


async def test_a_broadcasting_listener_runs_in_every_instance(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="config", group="cache", message_model="BROADCASTING", registry=registry)
    async def on_change(change: dict[str, str]) -> None: ...

    first, second = record_calls(on_change), record_calls(on_change)
    async with (
        rocket_test_app(listeners=[first.spec]) as a,
        rocket_test_app(listeners=[second.spec]),
    ):
        await a.template.send("config", {"k": "v"})
        await a.drain()
    assert first.payloads == second.payloads == [{"k": "v"}]


async def test_an_orderly_listener_sees_each_key_in_order(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="ledger", group="books", consume_mode="ORDERLY", registry=registry)
    async def post(order: Order, meta: MessageMeta) -> None:
        if order.amount == 1 and meta.reconsume_times == 0:
            raise RetryLater()

    rec = record_calls(post)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        for amount in range(3):
            for oid in ("a", "b"):
                await t.template.send_orderly("ledger", Order(id=oid, amount=amount), hash_key=oid)
        await t.advance(2)
    for oid in ("a", "b"):
        assert [o.amount for o in rec.payloads if o.id == oid] == [0, 1, 1, 2]


async def test_delayed_sends_arrive_when_their_time_comes(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="reminders", group="mailer", registry=registry)
    async def remind(text: str) -> None: ...

    rec = record_calls(remind)
    async with rocket_test_app(listeners=[rec.spec]) as t:
        await t.template.send_delayed("reminders", "level", level=2)  # 5 s
        await t.template.send_delayed("reminders", "timer", seconds=7)
        await t.drain()
        rec.assert_not_called()
        await t.advance(5)
        assert rec.payloads == ["level"]
        await t.advance(2)
        assert rec.payloads == ["level", "timer"]


async def test_assert_published_checks_what_a_listener_sent(
    rocket_test_app: RocketTestAppFactory, registry: ListenerRegistry
) -> None:
    sent_by_listener: list[str] = []

    @rocket_listener(topic="orders", group="billing", registry=registry)
    async def on_order(order: Order) -> None:
        sent_by_listener.append(order.id)
        await app.template.send("invoices:created", {"order": order.id})

    app = rocket_test_app(listeners=registry)
    async with app:
        await app.template.send("orders", Order(id="o-1"))
        await app.drain()
        [invoice] = assert_published(app, "invoices", "created", count=1, payload={"order": "o-1"})
    assert invoice.tags == "created" and sent_by_listener == ["o-1"]
    with pytest.raises(AssertionError, match="not 2"):
        assert_published(app, "invoices", count=2)
    with pytest.raises(AssertionError, match="nothing was published"):
        assert_published(app.broker, "refunds")


async def test_a_rocket_app_runs_on_the_memory_transport_fixture(
    memory_transport: MemoryTransport, registry: ListenerRegistry
) -> None:
    @rocket_listener(topic="orders", group="billing", registry=registry)
    async def on_order(order: Order) -> None: ...

    rec = record_calls(on_order)
    broker = memory_transport.broker
    settings = RocketSettings(_env_file=None)
    async with RocketApp(settings, transport=memory_transport, listeners=[rec.spec]) as app:
        await app.template.send("orders", Order(id="o-1"))
        await broker.drain()
        assert [c.group for c in broker.consumers()] == ["billing"]
    assert rec.payloads == [Order(id="o-1")]
    assert broker.consumers() == [] and broker.producers == {}  # the app stopped its clients
