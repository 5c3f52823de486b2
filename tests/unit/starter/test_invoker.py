"""ListenerInvoker and ListenerGroup, one message at a time: idempotency key sources, what the
handler receives, and the outcome each message reports to the consumer."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from rmqkit.client.message import MessageQueue
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult
from rmqkit.common.properties import Prop
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter import ListenerRegistry, MessageMeta, RetryLater, rocket_listener
from rmqkit.starter.group import ListenerGroup
from rmqkit.starter.idempotency import Claim, MemoryIdempotencyStore
from rmqkit.starter.invoker import IdempotencyOptions, ListenerInvoker
from rmqkit.starter.listener import ListenerSpec
from rmqkit.starter.meta import IDEMPOTENCY_KEY
from rmqkit.starter.observability import StarterMetrics
from rmqkit.starter.outcomes import ACK, Action, delay_level_for

HOST = (b"\x7f\x00\x00\x01", 10911)
QUEUE = MessageQueue("orders", "broker-a", 0)


class Order(BaseModel):
    order_id: str


def _message(order_id: str = "o-1", topic: str = "orders", **props: str) -> StoredMessage:
    properties = {Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: f"ID-{order_id}", Prop.TAGS: "created"}
    properties.update(props)
    body = Order(order_id=order_id).model_dump_json().encode()
    return StoredMessage(topic, body, properties, 0, 0, 0, 0, 0, 0, HOST, 0, HOST, 0, 0, 0, 0)


def _spec(func: Any, **options: Any) -> ListenerSpec:
    registry = ListenerRegistry()
    rocket_listener(topic="orders", group="billing", registry=registry, **options)(func)
    (spec,) = registry
    return spec


def _invoker(spec: ListenerSpec, store: MemoryIdempotencyStore | None = None) -> ListenerInvoker:
    idem = IdempotencyOptions(store) if store is not None else None
    return ListenerInvoker(spec, spec.func, idempotency=idem, metrics=StarterMetrics())


@pytest.mark.parametrize(
    ("source", "props", "key"),
    [
        ("auto", {IDEMPOTENCY_KEY: "pay-1"}, "pay-1"),
        ("auto", {}, "ID-o-1"),
        ("msg_id", {}, "ID-o-1"),
        ("keys", {Prop.KEYS: "k1 k2"}, "k1 k2"),
        ("property:tenant", {"tenant": "acme"}, "acme"),
        ("payload.order_id", {}, "o-1"),
    ],
)
async def test_built_in_key_sources_read_the_message_without_building_its_meta(
    source: str, props: dict[str, str], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_meta(*args: object, **kwargs: object) -> MessageMeta:
        raise AssertionError("MessageMeta built for a built-in key source")

    monkeypatch.setattr(MessageMeta, "of", no_meta)
    calls: list[Order] = []

    async def on_order(order: Order) -> None:
        calls.append(order)

    store = MemoryIdempotencyStore()
    inv = _invoker(_spec(on_order, idempotency_key=source), store)
    assert await inv.invoke_one(_message(**props), "broker-a") is ACK
    assert calls == [Order(order_id="o-1")]
    assert await store.acquire(inv.scope, key, lease_s=60) is Claim.DONE


async def test_a_callable_key_source_receives_the_meta() -> None:
    async def on_order(order: Order) -> None: ...

    def key(order: Order, meta: MessageMeta) -> str:
        return f"{meta.topic}/{meta.broker_name}/{order.order_id}"

    store = MemoryIdempotencyStore()
    inv = _invoker(_spec(on_order, idempotency_key=key), store)
    assert await inv.invoke_one(_message(), "broker-a") is ACK
    assert await store.acquire(inv.scope, "orders/broker-a/o-1", lease_s=60) is Claim.DONE


async def test_a_handler_gets_the_meta_and_the_raw_message_when_it_asks() -> None:
    seen: list[tuple[Order, MessageMeta, StoredMessage]] = []

    async def on_order(order: Order, meta: MessageMeta, raw: StoredMessage) -> None:
        seen.append((order, meta, raw))

    m = _message()
    assert await _invoker(_spec(on_order)).invoke_one(m, "broker-a") is ACK
    [(order, meta, raw)] = seen
    assert order == Order(order_id="o-1") and raw is m
    assert (meta.msg_id, meta.group, meta.broker_name) == ("ID-o-1", "billing", "broker-a")


async def test_a_plain_function_runs_in_a_thread() -> None:
    calls: list[Order] = []

    def on_order(order: Order) -> None:
        calls.append(order)

    assert await _invoker(_spec(on_order)).invoke_one(_message(), "broker-a") is ACK
    assert calls == [Order(order_id="o-1")]


async def test_done_keys_are_skipped_and_busy_keys_retried() -> None:
    calls: list[Order] = []

    async def on_order(order: Order) -> None:
        calls.append(order)

    store = MemoryIdempotencyStore()
    inv = _invoker(_spec(on_order, idempotency_key="payload.order_id"), store)
    assert await store.acquire(inv.scope, "o-2", lease_s=60) is Claim.ACQUIRED  # someone else's

    assert await inv.invoke_one(_message("o-1"), "broker-a") is ACK
    duplicate = await inv.invoke_one(_message("o-1"), "broker-a")
    busy = await inv.invoke_one(_message("o-2"), "broker-a")

    assert (duplicate.action, duplicate.reason) == (Action.ACK, "duplicate")
    assert (busy.action, busy.reason) == (Action.RETRY, "busy")
    assert calls == [Order(order_id="o-1")]
    assert inv.metrics is not None
    counts = inv.metrics.snapshot().consumed[("billing", "orders")]
    assert (counts.consumed, counts.acked, counts.duplicates, counts.retried) == (3, 1, 1, 1)


async def test_a_single_message_reports_its_own_outcome_to_the_consumer() -> None:
    calls: list[str] = []

    async def on_order(order: Order) -> None:
        calls.append(order.order_id)
        if order.order_id == "late":
            raise RetryLater(delay=10)

    group = ListenerGroup("billing", [_invoker(_spec(on_order))])

    ok = ConsumeContext(QUEUE, 0)
    assert await group.handle([_message("o-1")], ok) is ConsumeResult.SUCCESS
    assert ok.failed == {}

    late = ConsumeContext(QUEUE, 0)
    assert await group.handle([_message("late")], late) is ConsumeResult.SUCCESS
    assert late.failed == {0: delay_level_for(10)}

    retried = _message("late", topic="%RETRY%billing", **{Prop.RETRY_TOPIC: "orders"})
    again = ConsumeContext(QUEUE, 0)
    assert await group.handle([retried], again) is ConsumeResult.SUCCESS
    assert again.failed == {0: delay_level_for(10)}

    elsewhere = ConsumeContext(QUEUE, 0)
    assert await group.handle([_message(topic="other")], elsewhere) is ConsumeResult.SUCCESS
    assert elsewhere.failed == {}
    assert calls == ["o-1", "late", "late"]


async def test_listeners_of_one_topic_are_routed_by_tag() -> None:
    seen: list[str] = []

    async def on_created(order: Order) -> None:
        seen.append(f"created:{order.order_id}")

    async def on_other(order: Order) -> None:
        seen.append(f"other:{order.order_id}")

    group = ListenerGroup("billing", [_invoker(_spec(on_created, tag="created")),
                                      _invoker(_spec(on_other))])  # fmt: skip
    for m in (_message("o-1"), _message("o-2", **{Prop.TAGS: "paid"})):
        assert await group.handle([m], ConsumeContext(QUEUE, 0)) is ConsumeResult.SUCCESS
    assert seen == ["created:o-1", "other:o-2"]
